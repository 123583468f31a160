//! A certname's deterministic phase in [0, 1): where in the cycle it runs.
//!
//! The same certname gets the same phase in every bridge process and every
//! release (FNV-1a, then a finaliser for an even spread), so due times do
//! not move when a bridge restarts — unlike Puppet's splay, which is
//! re-drawn on every agent restart.

/// The phase of `certname`.
pub fn phase(certname: &str) -> f64 {
    to_unit(mix(fnv1a(certname.as_bytes())))
}

/// A second, independent phase (`salt` picks which), e.g. for facts runs.
pub fn phase_salted(certname: &str, salt: u64) -> f64 {
    to_unit(mix(fnv1a(certname.as_bytes()) ^ mix(salt.wrapping_add(1))))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// splitmix64's finaliser: FNV alone clusters similar names.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn to_unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_and_in_range() {
        // Pinned: a change here moves every host's slot in a running fleet
        // (and bridges of two releases would disagree on them).
        let p = phase("web01.example.com");
        assert_eq!(p, 0.025607224071080847);
        assert!((0.0..1.0).contains(&p));
        assert_ne!(p, phase("web02.example.com"));
        assert_ne!(p, phase_salted("web01.example.com", 1));
    }

    #[test]
    fn sequential_names_spread_evenly() {
        // 100 buckets over 100k names like a real fleet's: each bucket
        // should hold about 1000; a bad hash piles them up.
        let mut buckets = [0u32; 100];
        for i in 0..100_000 {
            let p = phase(&format!("node{i:05}.dc1.example.com"));
            buckets[(p * 100.0) as usize] += 1;
        }
        let (min, max) = (buckets.iter().min().unwrap(), buckets.iter().max().unwrap());
        assert!(*min > 880 && *max < 1120, "min {min} max {max}");
    }
}
