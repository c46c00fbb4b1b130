//! The command line as files (trycmd): each `tests/cmd/*.toml` runs
//! `mailnet` with its arguments and compares exit code, stdout and stderr.
//! `TRYCMD=overwrite cargo test --test cli_cases` rewrites them.

#[test]
fn cli_cases() {
    trycmd::TestCases::new().case("tests/cmd/*.toml");
}
