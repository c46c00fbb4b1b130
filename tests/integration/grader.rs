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
        stdout.contains("TEST>>> Step: List the email\n    >>> Expect: [{'mesg_num': 1}]"),
        "{stdout}"
    );
    assert!(stdout.contains("***** TEST SUMMARY *****"), "{stdout}");
    assert!(
        stdout.starts_with("Note: no --student given: the students' servers (exmail.qq.com, gmail.com) are played by mailnet's own servers."),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["score"], report["total"]);
    assert!(report["scenarios"].as_array().unwrap().len() >= 11);
    // The faults' seed is printed and reported, so a run can be repeated.
    let seed = report["seed"].as_u64().expect("a seed in the JSON report");
    assert!(stdout.contains(&format!("seed {seed} ")), "{stdout}");
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
    assert!(stdout.contains("[FAILED] Expects two messages:\n    Credit: 0/10\n    Message: Result mismatch in step Count\n    Expected: [{'count': 2}]\n    Actual:   [{'count': 1, 'size':"), "{stdout}");
    assert!(
        stdout.contains("    Why:      [0].count: expected 2, got 1\n"),
        "the first differing key is named: {stdout}"
    );
    assert!(stdout.contains("[ERROR] Wrong password:\n    Credit: 0/5\n    Message: Error in step Bad login: error_proto(b'-ERR"), "{stdout}");
    assert!(
        stdout.contains("Transcript of step Bad login:")
            && stdout.contains("[grader pop3] C: PASS ****")
            && !stdout.contains("PASS nope"),
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
        stderr.contains("bad.yaml:4:11: unknown action `retrieve`"),
        "{stderr}"
    );
    let out = Command::new(BIN)
        .arg("check")
        .arg(format!("{}/cs305/1-pop3-login-quit.yaml", scenarios()))
        .output()
        .unwrap();
    assert!(out.status.success());
}

fn python3() -> bool {
    let found = Command::new("python3")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !found {
        assert!(
            std::env::var_os("MAILNET_REQUIRE_INTEROP").is_none(),
            "python3 is required"
        );
        eprintln!("skipped: python3 is not installed");
    }
    found
}

fn student_server() -> String {
    format!(
        "{}/tests/student/course_server.py",
        env!("CARGO_MANIFEST_DIR")
    )
}

/// Grades `tests/student/course_server.py --variant VARIANT` on the shipped CS305 scenarios.
fn grade(variant: &str) -> (Option<i32>, String) {
    grade_with_startup(variant, "15s")
}

/// As [`grade`], giving the server `startup` to open its ports.
fn grade_with_startup(variant: &str, startup: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["test", &format!("{}/cs305", scenarios())])
        .args([
            "--student",
            &format!(
                "python3 {} -n {{domain}} --variant {variant}",
                student_server()
            ),
            "--student-startup",
            startup,
            "--student-dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        std::fs::read_dir(dir.path()).unwrap().next().is_none(),
        "the submission folder is never written to"
    );
    (out.status.code(), stdout)
}

// The course's own grader (test.py of as1-benchmark-release), run on its own
// fixtures against the same kinds of server, printed 90/90 for correct,
// without-UIDL and slow-relay servers and 25/90 (PASSED 3 FAILED 4) for the
// `wrong` variant. For a server that crashes or never listens it prints no
// score at all: its partial-credit loop spins forever at fixture 5. 0/90 is
// mailnet's mark for those, stated here, not the course's.

#[test]
fn a_correct_student_server_earns_what_the_course_gives_90_of_90() {
    if !python3() {
        return;
    }
    let (code, stdout) = grade("correct");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(
        stdout.contains("Score: 90/90\nPASSED: 6 PARTIALLY PASSED: 1\n"),
        "{stdout}"
    );
    assert!(!stdout.contains("Note: no --student"), "{stdout}");
}

#[test]
fn a_server_without_uidl_and_top_loses_nothing() {
    if !python3() {
        return;
    }
    let (code, stdout) = grade("no-uidl");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("Score: 90/90\n"), "{stdout}");
}

#[test]
fn a_slow_relay_within_the_courses_waits_keeps_full_marks() {
    if !python3() {
        return;
    }
    let (code, stdout) = grade("slow-relay");
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("Score: 90/90\n"), "{stdout}");
}

#[test]
fn wrong_answers_score_as_the_course_scores_them() {
    if !python3() {
        return;
    }
    let (code, stdout) = grade("wrong");
    assert_eq!(code, Some(1), "{stdout}");
    assert!(
        stdout.contains("Score: 25/90\nPASSED: 3 FAILED: 4\n"),
        "{stdout}"
    );
    // LIST numbers from 0: the course's `mesg_num: 1` does not match.
    assert!(stdout.contains("[FAILED] Send an email to another user in the different domain and test LIST:\n    Credit: 0/5\n    Message: Result mismatch in step List the email\n"), "{stdout}");
    assert!(
        stdout.contains("Why:      [0].mesg_num: expected 1, got 0"),
        "{stdout}"
    );
    // Any sender is taken, so the mail from a non-existing sender arrives.
    assert!(stdout.contains("[FAILED] Send an email to another user from a non-existing email address:\n    Credit: 0/5\n    Message: Result mismatch in step Show the status\n"), "{stdout}");
    assert!(
        stdout.contains("(confirmed by a second run with the course's full waits)"),
        "{stdout}"
    );
}

#[test]
fn a_server_that_crashes_or_never_listens_scores_0() {
    if !python3() {
        return;
    }
    for variant in ["crash", "silent"] {
        // Neither ever listens: the course's own 2 s is all they get.
        let (code, stdout) = grade_with_startup(variant, "2s");
        assert_eq!(code, Some(1), "{stdout}");
        assert!(
            stdout.contains("Score: 0/90\nERROR: 7\n"),
            "{variant}: {stdout}"
        );
        assert!(stdout.contains("Message: Error in step Login the account in different domain: ConnectionRefusedError(111, 'Connection refused')"), "{variant}: {stdout}");
    }
}

#[test]
fn a_student_command_that_is_not_a_server_scores_0() {
    let (code, stdout) = {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new(BIN)
            .args([
                "test",
                &format!("{}/cs305", scenarios()),
                "--student",
                "false",
                "--student-dir",
            ])
            .arg(dir.path())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    assert_eq!(code, Some(1), "{stdout}");
    assert!(stdout.contains("Score: 0/90"), "{stdout}");
}

#[test]
fn student_given_where_no_scenario_has_a_student_server_is_an_error() {
    let out = Command::new(BIN)
        .args([
            "test",
            &format!("{}/seeds", scenarios()),
            "--student",
            "python3 server.py -n {domain}",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--student was given, but no scenario has a student's server"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn the_course_files_written_load_in_python_with_the_courses_types() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let net = mailnet::network::Network::default_network();
    let ports = mailnet::network::cs305::configured_ports(&net);
    mailnet::network::cs305::write(&net, &ports, dir.path()).unwrap();
    // What students' servers and the course's agent read, with the course's types.
    let script = "import tomllib\nc = tomllib.load(open('data/config.toml','rb'))\nf = tomllib.load(open('data/fdns.toml','rb'))\nassert c['agent']['mail.sustech.edu.cn'] == {'smtp': 'smtp.exmail.qq.com', 'pop': 'pop.exmail.qq.com'}, c['agent']\nassert c['server']['exmail.qq.com'] == {'smtp': 1125, 'pop': 1210}\nassert c['accounts']['gmail.com']['usr1@gmail.com'] == 'password1'\nassert f['MX']['gmail.com.'] == 'gmail-smtp-in.l.google.com.'\nassert f['P']['smtp.gmail.com.'] == '2125' and f['P']['pop.gmail.com.'] == '2210' and f['P']['gmail-smtp-in.l.google.com.'] == '2125'\nprint('ok')\n";
    let out = Command::new("python3")
        .args(["-c", script])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_whole_class_is_graded_with_a_csv_and_each_students_reports() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let class = dir.path().join("class");
    for (student, variant) in [("alice", "correct"), ("bob", "crash"), ("carol", "no-uidl")] {
        std::fs::create_dir_all(class.join(student)).unwrap();
        std::fs::write(
            class.join(student).join("server.py"),
            format!("import runpy, sys\nsys.argv += ['--variant', '{variant}']\nrunpy.run_path({:?}, run_name='__main__')\n", student_server()),
        )
        .unwrap();
    }
    let out_dir = dir.path().join("out");
    let out = Command::new(BIN)
        .args(["test", &format!("{}/cs305", scenarios()), "--jobs", "3"])
        // A loaded CI machine may start Python slower than the course's 2 s.
        .args(["--student-startup", "15s"])
        .args([
            "--student",
            "python3 server.py -n {domain}",
            "--submissions",
        ])
        .arg(&class)
        .arg("--summary")
        .arg(out_dir.join("class.csv"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = std::fs::read_to_string(out_dir.join("class.csv")).unwrap();
    let reports = || {
        ["alice", "carol"]
            .map(|s| std::fs::read_to_string(out_dir.join(format!("{s}.txt"))).unwrap_or_default())
            .join("\n")
    };
    assert_eq!(
        csv,
        "name,score,max,passed,partially_passed,failed,error\nalice,90,90,6,1,0,0\nbob,0,90,0,0,0,7\ncarol,90,90,6,1,0,0\n",
        "{}",
        reports()
    );
    let report = std::fs::read_to_string(out_dir.join("bob.txt")).unwrap();
    assert!(
        report.contains("Score: 0/90") && report.contains("this server crashes at start"),
        "{report}"
    );
    let gradescope: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("alice.results.json")).unwrap())
            .unwrap();
    assert_eq!(gradescope["score"], 90);
    assert_eq!(gradescope["tests"].as_array().unwrap().len(), 7);
    assert_eq!(gradescope["tests"][4]["max_score"], 50);
    assert!(
        std::fs::read_dir(class.join("alice")).unwrap().count() == 1,
        "submissions are not written to"
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_every_student_server_and_still_reports() {
    if !python3() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A private copy, so its command line names this test alone.
    let server = dir.path().join("marker_server.py");
    std::fs::copy(student_server(), &server).unwrap();
    let json = dir.path().join("partial.json");
    let child = Command::new(BIN)
        .args(["test", &format!("{}/cs305", scenarios())])
        .args([
            "--student",
            &format!(
                "python3 {} -n {{domain}} --variant slow-relay",
                server.display()
            ),
            "--student-dir",
        ])
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let running = || {
        Command::new("pgrep")
            .args(["-f", &server.display().to_string()])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !running() {
        assert!(
            std::time::Instant::now() < deadline,
            "the student's server never started"
        );
        std::thread::yield_now();
    }
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(!running(), "a student's server outlived mailnet test");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert!(report["scenarios"].is_array());
    assert!(String::from_utf8_lossy(&out.stdout).contains("***** TEST SUMMARY *****"));
}
