//! The `builder` command's behaviour on good and bad input, without network.

use std::path::Path;
use std::process::{Command, Output};

fn builder(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_builder"))
        .args(args)
        .env(
            "BUILDER_CACHE_DIR",
            std::env::temp_dir().join("builder-cli-tests"),
        )
        .output()
        .expect("builder runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn write(root: &Path, files: &[(&str, &str)]) {
    for (path, content) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
}

/// A throwaway project whose board `x` uses `recipes`, plus `extra` files.
fn project_x(recipes: &str, extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let board = format!(
        "description = \"x\"\nhostname = \"x\"\nrecipes = {recipes}\n[kernel]\npackage = \"linux-image-arm64\"\n"
    );
    write(dir.path(), &[("boards/x.toml", board.as_str())]);
    write(dir.path(), extra);
    dir
}

/// Runs the builder on board `x` of a project.
fn builder_x(project: &tempfile::TempDir, args: &[&str]) -> Output {
    let mut all = vec![
        "--project",
        project.path().to_str().unwrap(),
        "--board",
        "x",
    ];
    all.extend_from_slice(args);
    builder(&all)
}

#[test]
fn boards_lists_every_board_with_a_description() {
    let output = builder(&["boards"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    for board in ["qemu-virt", "rpi3", "rpi4"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(board))
            .unwrap_or_else(|| panic!("{board} missing: {stdout}"));
        assert!(line.len() > board.len() + 10, "{line}");
    }
}

#[test]
fn unknown_board_is_one_clear_error() {
    let output = builder(&["--board", "rpi9"]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(error.contains("unknown board \"rpi9\""), "{error}");
    assert!(error.contains("qemu-virt, rpi3, rpi4"), "{error}");
    assert_eq!(error.matches("error:").count(), 1, "{error}");
}

#[test]
fn bad_toml_names_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        &[(
            "boards/x.toml",
            "description = \"x\"\nhostname = \"x\"\nrecipes = []\nkernal = 1\n[kernel]\npackage = \"k\"\n",
        )],
    );
    let output = builder(&[
        "--project",
        dir.path().to_str().unwrap(),
        "--board",
        "x",
        "lock",
    ]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(error.contains("boards/x.toml: line 4, column 1"), "{error}");
    assert!(error.contains("kernal"), "{error}");
}

#[test]
fn stale_lock_says_to_run_builder_lock_before_any_download() {
    let dir = project_x(
        "[\"r\"]",
        &[
            ("recipes/r.toml", "packages = [\"bash\"]\n"),
            (
                "boards/x.lock",
                "version = 1\nboard = \"x\"\nsuite = \"trixie\"\narchitecture = \"arm64\"\nrelease-date = \"Sat, 12 Sep 2026 07:55:41 UTC\"\nsource-date-epoch = 1789199741\ninputs = \"sha256:old\"\n",
            ),
        ],
    );
    let output = builder_x(&dir, &["--mirror", "http://127.0.0.1:9/none"]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains("x.lock does not match the recipes"),
        "{error}"
    );
    assert!(error.contains("builder -- lock --board x"), "{error}");
}

#[test]
fn a_directory_of_other_files_is_refused_as_out_before_any_download() {
    let dir = project_x("[]", &[]);
    let out = dir.path().join("documents");
    write(dir.path(), &[("documents/letter.txt", "dear")]);
    let out_arg = out.to_str().unwrap();
    let output = builder_x(
        &dir,
        &[
            "--mirror",
            "http://127.0.0.1:9/none",
            "build",
            "--out",
            out_arg,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains(&format!("output directory {out_arg} is not empty")),
        "{error}"
    );
    assert!(
        error.contains("choose an empty or new directory"),
        "{error}"
    );
    assert!(
        !error.contains("127.0.0.1"),
        "refused before the mirror: {error}"
    );
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left, ["letter.txt"]);
    assert_eq!(
        std::fs::read_to_string(out.join("letter.txt")).unwrap(),
        "dear"
    );
}

#[test]
fn unreachable_mirror_is_named() {
    let dir = project_x("[]", &[]);
    let output = builder_x(&dir, &["lock", "--mirror", "http://127.0.0.1:9/debian"]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains("http://127.0.0.1:9/debian/dists/trixie/InRelease"),
        "{error}"
    );
    assert!(
        !dir.path().join("boards/x.lock").exists(),
        "no lock is written on failure"
    );
}

#[test]
fn bundle_refuses_bad_keys_before_building() {
    let project = project_x("[]", &[("recipes/none.toml", "description = \"n\"\n")]);
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path().join("dev");
    let made = builder(&["keygen", dir.to_str().unwrap()]);
    assert!(made.status.success(), "{}", stderr(&made));
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(stdout.contains("signing.key.pem"), "{stdout}");
    // keygen into the same directory again: refused, nothing overwritten.
    let before = std::fs::read(dir.join("signing.key.pem")).unwrap();
    let again = builder(&["keygen", dir.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read(dir.join("signing.key.pem")).unwrap(), before);

    let key = dir.join("signing.key.pem");
    let cert = dir.join("signing.cert.pem");
    let (key, cert) = (key.to_str().unwrap(), cert.to_str().unwrap());
    // A board without a keyring: its image would refuse every bundle.
    let output = builder_x(&project, &["bundle", "--key", key, "--cert", cert]);
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains("board x has no keyring") && error.contains("--keyring"),
        "{error}"
    );
    // A missing key file.
    let output = builder_x(
        &project,
        &["bundle", "--key", "/nonexistent/k.pem", "--cert", cert],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("--key /nonexistent/k.pem: cannot read the file"),
        "{}",
        stderr(&output)
    );
    // The key of one set with the certificate of the CA: no match.
    let ca = dir.join("ca.cert.pem");
    let output = builder_x(
        &project,
        &["bundle", "--key", key, "--cert", ca.to_str().unwrap()],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("does not match"),
        "{}",
        stderr(&output)
    );
    // A keyring of another CA.
    let other = keys.path().join("other");
    assert!(
        builder(&["keygen", other.to_str().unwrap()])
            .status
            .success()
    );
    let other_ca = other.join("ca.cert.pem");
    let output = builder_x(
        &project,
        &[
            "--keyring",
            other_ca.to_str().unwrap(),
            "bundle",
            "--key",
            key,
            "--cert",
            cert,
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let error = stderr(&output);
    assert!(
        error.contains("not issued by a CA in the keyring") && error.contains("other/ca.cert.pem"),
        "{error}"
    );
}

#[test]
fn publish_refuses_bad_input_before_building() {
    let keys = tempfile::tempdir().unwrap();
    let dir = keys.path().join("dev");
    assert!(builder(&["keygen", dir.to_str().unwrap()]).status.success());
    let ca = dir.join("ca.cert.pem");
    let project = project_x("[]", &[("recipes/none.toml", "description = \"n\"\n")]);
    let key = dir.join("signing.key.pem");
    let cert = dir.join("signing.cert.pem");
    let out = keys.path().join("release");
    let publish = |before: &[&str], after: &[&str]| {
        let mut args: Vec<&str> = vec!["--keyring", ca.to_str().unwrap()];
        args.extend(before);
        args.extend([
            "publish",
            "--key",
            key.to_str().unwrap(),
            "--cert",
            cert.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        args.extend(after);
        let output = builder_x(&project, &args);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        stderr(&output)
    };
    let error = publish(&["--image-version", "v2"], &[]);
    assert!(
        error.contains("--image-version: version \"v2\" must start with a digit"),
        "{error}"
    );
    let error = publish(&[], &["--base-url", "ftp://[2001:db8::1]/vinyl/"]);
    assert!(
        error
            .contains("--base-url \"ftp://[2001:db8::1]/vinyl/\": give an http:// or https:// URL"),
        "{error}"
    );
    let error = publish(&[], &["--min-version", "1 0"]);
    assert!(error.contains("--min-version: version \"1 0\""), "{error}");
    let error = publish(&["--image-version", "1.4.0"], &["--min-version", "1.10.0"]);
    assert!(
        error.contains("--min-version 1.10.0 is newer than the release's version 1.4.0"),
        "{error}"
    );
    assert!(!out.exists(), "a refused publish made {}", out.display());
}
