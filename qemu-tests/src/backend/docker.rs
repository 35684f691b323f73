//! The docker backend: QEMU in a container of the locally built runner image
//! ([`super::runner_image`]), started and removed through `testcontainers`.
//!
//! The container sees the work directory (read-write) and the disk image and
//! boot files (read-only) at the same paths as the host, so the console log,
//! QEMU's output and the shell socket are where the local backend puts them.
//! It runs [`crate::cmdline::container_script`]: make the overlay with
//! qemu-img, run QEMU, and kill QEMU when the test process lets go of the
//! work directory's lock file — which the kernel does when the test process
//! dies, however it dies. Killing the machine (and so dropping the
//! [`crate::Vm`]) force-removes the container. A container whose test process
//! died stays behind stopped (its QEMU killed) until the next docker machine
//! starts and removes it ([`sweep_stale_containers`]); it is not created
//! with auto-remove because then a container that fails early (say, the
//! runner image has no `/bin/sh`) would vanish with its error message.
//!
//! Networking: the container has none of its own (`--network none`). With
//! [`crate::Network::Tap`] it gets CAP_NET_ADMIN and
//! CAP_SYS_ADMIN, `/dev/net/tun`, and the namespace file
//! `/run/netns/<netns>` bind-mounted, and QEMU runs under
//! `nsenter --net=/run/netns/<netns>`: the tap device lives in the test's
//! namespace exactly as with the local backend. Only then does the container
//! run as root; otherwise it runs as the test's user and group.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use testcontainers::bollard::models::{DeviceMapping, HostConfig};
use testcontainers::core::{AccessMode, Mount, WaitFor};
use testcontainers::runners::SyncRunner;
use testcontainers::{Container, GenericImage, ImageExt};

use super::{ExitStatus, Process, runner_image};
use crate::cmdline::{self, NetnsEntry};
use crate::config::{MachineConfig, Network};
use crate::error::{Error, Result};
use crate::host::probe;
use crate::netns::netns_path;
use crate::workdir::{self, Layout};

/// How to get docker on Debian.
pub const INSTALL: &str =
    "apt-get install docker.io (and make sure the daemon runs and you may use it)";

/// Label on every container the harness starts: the work directory.
pub const LABEL: &str = "org.vinyl.qemu-tests.workdir";

/// Checks that the docker CLI runs and reaches a daemon.
pub fn check() -> Result<()> {
    probe(
        "docker",
        &["version", "--format", "{{.Server.Version}}"],
        INSTALL,
    )
    .map(drop)
}

/// Makes sure the runner image exists, then starts the container that makes
/// the overlay and runs QEMU.
pub(crate) fn start(
    config: &MachineConfig,
    layout: &Layout,
    image_len: u64,
) -> Result<DockerProcess> {
    check()?;
    if config.write_image {
        return Err(Error::Config(
            "write_image needs the local backend (the container sees the image read-only)".into(),
        ));
    }
    let image = runner_image::ensure()?;
    sweep_stale_containers();
    let (name, tag) = image.rsplit_once(':').unwrap_or((&image, "latest"));

    let prepare = cmdline::overlay_commands(config, image_len, &layout.overlay);
    let qemu = cmdline::qemu_argv(config, layout, NetnsEntry::Nsenter)?;
    let script = cmdline::container_script(&prepare, &qemu, layout);
    workdir::write_command_file(layout, &script)?;

    let dir = layout.dir.display().to_string();
    let container_name = format!(
        "qemu-tests-{}",
        layout.dir.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut request = GenericImage::new(name, tag)
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(["/bin/sh".to_string(), "-c".into(), script])
        .with_container_name(container_name)
        .with_label(LABEL, dir.clone())
        .with_network("none")
        .with_startup_timeout(Duration::from_secs(60))
        .with_mount(Mount::bind_mount(dir.clone(), dir));

    let mut read_only: BTreeSet<PathBuf> = config
        .input_files()
        .into_iter()
        .filter(|file| !file.starts_with(&layout.dir))
        .cloned()
        .collect();
    let tap = matches!(config.network, Network::Tap { .. });
    if let Network::Tap { netns, .. } = &config.network {
        read_only.insert(netns_path(netns));
        request = request.with_cap_add("NET_ADMIN").with_cap_add("SYS_ADMIN");
    } else {
        let uid = rustix::process::getuid().as_raw();
        let gid = rustix::process::getgid().as_raw();
        request = request.with_user(format!("{uid}:{gid}"));
    }
    for file in read_only {
        let path = file.display().to_string();
        request = request.with_mount(
            Mount::bind_mount(path.clone(), path).with_access_mode(AccessMode::ReadOnly),
        );
    }
    let request = request.with_host_config_modifier(move |host: &mut HostConfig| {
        host.publish_all_ports = Some(false);
        host.port_bindings = None;
        if tap {
            host.devices = Some(vec![DeviceMapping {
                path_on_host: Some("/dev/net/tun".into()),
                path_in_container: Some("/dev/net/tun".into()),
                cgroup_permissions: Some("rwm".into()),
            }]);
        }
    });

    let exit_file = layout.exit_file.clone();
    match request.start() {
        Ok(container) => Ok(DockerProcess {
            container: Some(container),
            exit_file,
            qemu_log: layout.qemu_log.clone(),
            exited: None,
            last_check: None,
        }),
        Err(e) => Err(Error::Setup(format!(
            "docker: starting the QEMU container from {image} failed: {e}"
        ))),
    }
}

/// QEMU in a container.
pub(crate) struct DockerProcess {
    container: Option<Container<GenericImage>>,
    exit_file: PathBuf,
    qemu_log: PathBuf,
    exited: Option<ExitStatus>,
    last_check: Option<Instant>,
}

/// How often [`DockerProcess::try_wait`] asks docker whether the container runs.
const DOCKER_POLL: Duration = Duration::from_millis(250);

fn append(path: &Path, text: &str) {
    use std::io::Write;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
    {
        let _ = file.write_all(text.as_bytes());
    }
}

/// Removes containers of earlier machines whose test process died: their
/// work directory's lock is not held (a live machine holds it from before
/// its container starts until after the container is removed).
pub fn sweep_stale_containers() {
    let Ok(output) = Command::new("docker")
        .args(["ps", "-a", "--filter"])
        .arg(format!("label={LABEL}"))
        .args([
            "--format",
            &format!("{{{{.ID}}}} {{{{.Label \"{LABEL}\"}}}}"),
        ])
        .output()
    else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Some((id, dir)) = line.split_once(' ') else {
            continue;
        };
        let dir = Path::new(dir);
        if !workdir::is_live(dir) {
            let _ = Command::new("docker")
                .args(["rm", "-f", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl std::fmt::Debug for DockerProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerProcess")
            .field(
                "container",
                &self.container.as_ref().map(|c| c.id().to_string()),
            )
            .field("exited", &self.exited)
            .finish()
    }
}

impl DockerProcess {
    fn read_exit_file(&self) -> Option<ExitStatus> {
        let text = std::fs::read_to_string(&self.exit_file).ok()?;
        Some(ExitStatus::from_shell_status(text.trim().parse().ok()?))
    }
}

impl Process for DockerProcess {
    fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if self.exited.is_some() {
            return Ok(self.exited);
        }
        if let Some(status) = self.read_exit_file() {
            self.exited = Some(status);
            return Ok(self.exited);
        }
        let Some(container) = &self.container else {
            return Ok(self.exited);
        };
        // Asking docker is a request to the daemon; waits poll often.
        if self.last_check.is_some_and(|t| t.elapsed() < DOCKER_POLL) {
            return Ok(None);
        }
        self.last_check = Some(Instant::now());
        if container.is_running().unwrap_or(false) {
            return Ok(None);
        }
        // The script writes the exit file before it ends. Without one, the
        // script never ran or was killed: the container's own exit code and
        // log (say, "exec /bin/sh: no such file or directory") tell why.
        if let Some(status) = self.read_exit_file() {
            self.exited = Some(status);
            return Ok(self.exited);
        }
        let code = container.exit_code().ok().flatten();
        let mut log = container.stdout_to_vec().unwrap_or_default();
        log.extend(container.stderr_to_vec().unwrap_or_default());
        let note = format!(
            "\n[qemu-tests: the container {} ended with exit code {} before QEMU's script finished; its own output:]\n{}\n",
            container.id(),
            code.map_or("?".to_string(), |c| c.to_string()),
            String::from_utf8_lossy(&log).trim_end()
        );
        append(&self.qemu_log, &note);
        self.exited = Some(ExitStatus {
            code: code.map(|c| c as i32),
            signal: None,
        });
        Ok(self.exited)
    }

    fn kill(&mut self) {
        if let Some(container) = self.container.take() {
            // Force-removes (SIGKILL).
            let _ = container.rm();
        }
        if self.exited.is_none() {
            self.exited = Some(self.read_exit_file().unwrap_or(ExitStatus {
                code: None,
                signal: Some(9),
            }));
        }
    }
}
