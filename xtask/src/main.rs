//! `cargo xtask`: project automation.
fn main() -> anyhow::Result<()> {
    anyhow::bail!("usage: cargo xtask ci")
}
