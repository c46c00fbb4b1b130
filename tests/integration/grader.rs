//! `mailnet test` as a grader and as CI use it.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mailnet");

fn scenarios() -> String {
    format!("{}/scenarios", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_built_in_scenarios_all_earn_full_credit() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let junit = dir.path().join("report.xml");
    let out = Command::new(BIN)
        .args(["test", &scenarios(), "--jobs", "2", "--json"])
        .arg(&json)
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Setup scenario: POP3 USER, PASS and QUIT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("TEST>>> Step: List the email\n    >>> Expect: [{\"msg_num\":1}]"),
        "{stdout}"
    );
    assert!(stdout.contains("***** TEST SUMMARY *****"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["score"], report["total"]);
    assert!(report["scenarios"].as_array().unwrap().len() >= 11);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<testsuite name=\"mailnet\"") && xml.contains("failures=\"0\" errors=\"0\""),
        "{xml}"
    );
}

#[test]
fn the_cs305_cases_score_as_the_course_grader_printed() {
    let out = Command::new(BIN)
        .args(["test", &format!("{}/cs305", scenarios())])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("Score: 90/90\nPASSED: 6 PARTIALLY PASSED: 1\n"),
        "{stdout}"
    );
    assert!(stdout.contains("[PARTIALLY PASSED] Send an email to another user from a non-existing email address:\n    Credit: 5/5\n    Message: Raised error in step Send email: SMTPSenderRefused -> 5 pts"), "{stdout}");
}

#[test]
fn wrong_expectations_lose_points_with_expected_actual_and_transcript() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "scenario: Expects two messages\ncredit: 10\nsteps:\n  - {uses: sendmail, args: [usr1@gmail.com, [bob@gmail.com], Hi, Body]}\n  - {uses: login, args: [bob@gmail.com, password2]}\n  - {name: Count, uses: stat, expect: [{count: 2}]}\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("error.yaml"),
        "scenario: Wrong password\ncredit: 5\nsteps:\n  - {name: Bad login, uses: login, args: [bob@gmail.com, nope]}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("right.yaml"), "scenario: Noop\ncredit: 3\nsteps:\n  - {uses: login, args: [bob@gmail.com, password2]}\n  - {uses: noop, expect: {resp: \"b'+OK\"}}\n").unwrap();
    let out = Command::new(BIN)
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("Score: 3/18"), "{stdout}");
    assert!(stdout.contains("[FAILED] Expects two messages:\n    Credit: 0/10\n    Message: step Count: the result does not match\n    Expected: [{\"count\":2}]\n    Actual:   [{\"count\":1,\"size\":"), "{stdout}");
    assert!(stdout.contains("[ERROR] Wrong password:\n    Credit: 0/5\n    Message: Raised error in step Bad login: error_proto: login refused"), "{stdout}");
    assert!(
        stdout.contains("Transcript of step Bad login:") && stdout.contains("C: PASS [password]"),
        "{stdout}"
    );
    let out = Command::new(BIN)
        .arg("test")
        .arg(dir.path())
        .args(["--min-score", "3"])
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn check_validates_scenarios_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "scenario: x\nsteps:\n  - uses: login\n  - uses: retrieve\n",
    )
    .unwrap();
    let out = Command::new(BIN).arg("check").arg(&bad).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.yaml: line 4 column 11: unknown action `retrieve`"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .arg("check")
        .arg(format!("{}/cs305/1-pop3-login-quit.yaml", scenarios()))
        .output()
        .unwrap();
    assert!(out.status.success());
}

/// The CS305 scenarios with exmail.qq.com played by a student's server.
fn student_scenarios(dir: &std::path::Path) {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(format!("{}/cs305", scenarios())).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap().replace(
            "{domain: mail.sustech.edu.cn, type: std}",
            "{domain: mail.sustech.edu.cn, type: student}",
        );
        std::fs::write(dir.join(path.file_name().unwrap()), text).unwrap();
    }
}

#[test]
fn a_broken_student_server_earns_less_and_is_told_why() {
    if !Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
    {
        assert!(
            std::env::var_os("MAILNET_REQUIRE_INTEROP").is_none(),
            "python3 is required"
        );
        eprintln!("skipped: python3 is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    student_scenarios(&dir.path().join("scenarios"));
    let server = format!(
        "{}/tests/student/broken_server.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let out = Command::new(BIN)
        .arg("test")
        .arg(dir.path().join("scenarios"))
        .args([
            "--student",
            &format!("python3 {server} -n {{server}}"),
            "--student-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    // It relays nothing, takes any sender and fails NOOP: what it does right still scores.
    assert!(stdout.contains("Score: 25/90"), "{stdout}");
    assert!(
        stdout.contains("[PASSED] POP3 USER, PASS and QUIT:"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "[PASSED] Send an email to another user in the different domain and test STAT:"
        ),
        "mailnet relays to the student's server: {stdout}"
    );
    assert!(
        stdout.contains(
            "[FAILED] Send an email to another user in the different domain and test LIST:"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("refused NOOP: -ERR no"), "{stdout}");
    assert!(
        stdout.contains("output of student server exmail.qq.com:"),
        "{stdout}"
    );
    let config = std::fs::read_to_string(dir.path().join("data/config.toml")).unwrap();
    assert!(config.contains("[server.\"exmail.qq.com\"]"), "{config}");
}

#[test]
fn a_student_server_that_never_listens_costs_its_scenarios_only() {
    let dir = tempfile::tempdir().unwrap();
    student_scenarios(&dir.path().join("scenarios"));
    std::fs::write(
        dir.path().join("scenarios/8-std-only.yaml"),
        "scenario: Only mailnet's servers\ncredit: 1\nsteps:\n  - {uses: login, args: [bob@gmail.com, password2]}\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .arg("test")
        .arg(dir.path().join("scenarios"))
        .args([
            "--student",
            "echo starting {server}; exec sleep 30",
            "--student-startup",
            "300ms",
            "--student-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains("student server exmail.qq.com did not open port"),
        "{stdout}"
    );
    assert!(
        stdout.contains("starting exmail.qq.com"),
        "its output is shown: {stdout}"
    );
    assert!(
        stdout.contains("[PASSED] Only mailnet's servers:"),
        "{stdout}"
    );
    assert!(stdout.contains("Score: 1/91"), "{stdout}");
}
