use pvc_psych::{dump, load};
#[test]
fn db() {
    let text = std::fs::read_to_string("/tmp/dbvals/oracle.json").unwrap();
    let cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut bad = 0;
    for c in cases.as_array().unwrap() {
        let t = c["text"].as_str().unwrap();
        let want = c["ruby"].as_str().unwrap();
        let got = match load(t) { Ok(v) => dump(&v), Err(e) => format!("ERROR {e}") };
        if got != want { bad += 1; eprintln!("{} {t:?}\n want {want:?}\n got  {got:?}", c["table"]); }
    }
    assert_eq!(bad, 0);
}
