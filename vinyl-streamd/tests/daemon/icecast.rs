//! Push to a real icecast2 on loopback; a client of the mount decodes the tone.

use crate::common::*;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running icecast2, killed on drop.
pub struct Icecast {
    child: Child,
    /// Where it listens, on 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Icecast {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts icecast2 on a free 127.0.0.1 port (source password `vinyl-secret`).
pub fn start_icecast() -> Icecast {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let root = Command::new("id").arg("-u").output().unwrap().stdout == b"0\n";
    // icecast2 refuses to run as root unless it drops privileges; the
    // unprivileged user then needs to write its logs.
    let security = if root {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        "<security><chroot>0</chroot><changeowner><user>nobody</user><group>nogroup</group></changeowner></security>"
    } else {
        "<security><chroot>0</chroot></security>"
    };
    let logdir = dir.path().display();
    let config = format!(
        "<icecast><location>test</location><admin>test@localhost</admin>\
         <limits><clients>20</clients><sources>2</sources><source-timeout>10</source-timeout>\
         <burst-size>65536</burst-size></limits>\
         <authentication><source-password>vinyl-secret</source-password>\
         <admin-user>admin</admin-user><admin-password>admin-secret</admin-password></authentication>\
         <hostname>127.0.0.1</hostname>\
         <listen-socket><port>{port}</port><bind-address>127.0.0.1</bind-address></listen-socket>\
         <paths><basedir>/usr/share/icecast2</basedir><logdir>{logdir}</logdir>\
         <webroot>/usr/share/icecast2/web</webroot><adminroot>/usr/share/icecast2/admin</adminroot></paths>\
         <logging><accesslog>access.log</accesslog><errorlog>error.log</errorlog><loglevel>3</loglevel></logging>\
         {security}</icecast>"
    );
    let path = dir.path().join("icecast.xml");
    std::fs::write(&path, config).unwrap();
    let child = Command::new("icecast2")
        .arg("-c")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start icecast2");
    let ice = Icecast {
        child,
        port,
        _dir: dir,
    };
    let up = wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    assert!(up, "icecast2 did not start on port {port}");
    ice
}

#[test]
fn icecast_push_reaches_a_listener_of_the_mount() {
    if !have("ffmpeg") || !have("icecast2") {
        return;
    }
    let ice = start_icecast();
    let mount = format!("http://127.0.0.1:{}/vinyl.opus", ice.port);
    let wrong = Daemon::start(&[
        "--source",
        "tone",
        "--icecast-url",
        &mount,
        "--icecast-password",
        "wrong",
    ]);
    // Rejected credentials are reported and retried, not fatal.
    assert!(
        wait_until(Duration::from_secs(10), || {
            wrong
                .log()
                .iter()
                .any(|l| l.contains("icecast push") && l.contains("401"))
        }),
        "{:?}",
        wrong.log()
    );
    drop(wrong);

    // Opus here; the players test pushes MP3 (the default) and plays it with VLC.
    let d = Daemon::start(&[
        "--source",
        "tone",
        "--tone-dbfs",
        "-12",
        "--icecast-format",
        "opus",
        "--icecast-url",
        &mount,
        "--icecast-password",
        "vinyl-secret",
    ]);
    assert!(
        wait_until(Duration::from_secs(15), || d.status()["icecast_connected"]
            == true),
        "push never connected: {:?}",
        d.log()
    );
    let pcm = ffmpeg_decode(&["-i", &mount, "-t", "3"], None, Duration::from_secs(20));
    assert!(
        pcm.len() >= 2 * 48_000 * 2,
        "only {} samples from Icecast",
        pcm.len()
    );
    assert_tone(&left(&pcm[2 * 24_000..2 * 72_000]), -12.0, "via icecast");
    assert_eq!(d.metric("vinyl_icecast_connected"), 1.0);
}
