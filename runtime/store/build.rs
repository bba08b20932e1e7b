// `sqlx::migrate!` embeds the migration files at compile time; without this, adding one would
// not rebuild the crate and the binary would run the old schema.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
