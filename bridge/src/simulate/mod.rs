//! `pvc-bridge simulate`: the scheduler in virtual time against modelled
//! puppetservers, beside Puppet's own scheduling strategies.

/// Options of `pvc-bridge simulate`.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {}

/// Runs the simulation and writes its outputs.
pub fn main(args: Args) -> anyhow::Result<()> {
    let _ = args;
    anyhow::bail!("the simulation is not built yet")
}
