//! Golden tests of rkm's command line: the whole stdout, stderr and exit code
//! of every `--help` and every usage error, one case per file in
//! `tests/cmd/` (trycmd). A change to the surface shows up here as a diff;
//! after an intended change, `TRYCMD=overwrite cargo test -p rkm-client
//! --test cli_golden` rewrites the files, to be reviewed like code.

#[test]
fn help_and_usage_errors_are_exactly_as_recorded() {
    trycmd::TestCases::new()
        .default_bin_path(env!("CARGO_BIN_EXE_rkm"))
        .case("tests/cmd/*.toml");
}
