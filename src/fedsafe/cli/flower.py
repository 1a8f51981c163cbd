"""``fedsafe flower``: run a fedsafe config on Flower - simulation on this machine, or real processes (a TLS
SuperLink with SuperNode authentication, one SuperNode per hospital). Flower is imported only when a command runs.
"""

from __future__ import annotations

from pathlib import Path

import typer

from ..config import ConfigError, ExperimentConfig, config_hash, load_config
from .choices import OUTPUT, output_dir, profile_choice
from .console import console, fail, usage_error

app = typer.Typer(no_args_is_help=True, add_completion=False)  # completion: the fedsafe group's

_HOME_HELP = "Private Flower home (FLWR_HOME) of this machine's Flower processes and CLI calls."
_DEFAULT_HOME = Path.home() / ".fedsafe" / "flwr-home"


_CONFIG_HELP = "YAML config (over the profile)."
_POSITIONAL_HELP = "Deprecated: give the config as -c/--config CONFIG, as for `fedsafe train`."


def _config(config: Path | None, profile: str | None, set_: list[str], positional: Path | None = None
            ) -> ExperimentConfig:
    """The config of -c/--config, or of the deprecated positional CONFIG (with a note; not both)."""
    if positional is not None:
        if config is not None:
            raise usage_error(f"the config is given twice ({positional} and -c {config}): give only -c/--config")
        console.print("[yellow]note:[/] the positional CONFIG is deprecated: give it as -c/--config CONFIG, as for "
                      "`fedsafe train`", highlight=False)
        config = positional
    try:
        return load_config(config, profile=profile, overrides=list(set_))
    except ConfigError as e:
        raise fail(str(e)) from None


def _default_run_dir(cfg: ExperimentConfig) -> Path:
    return Path("runs") / f"{cfg.task.name}-{cfg.profile}-{config_hash(cfg)[:10]}-flower"


def _echo_fedsafe(line: str) -> None:
    # The ServerApp's own lines (and errors) from the `flwr run --stream` console.
    if line.startswith("fedsafe ") or "ERROR" in line or "Traceback" in line:
        console.print(line, highlight=False, markup=False)


@app.command()
def simulate(
    positional: Path = typer.Argument(None, hidden=True, metavar="[CONFIG]", help=_POSITIONAL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    profile: str = typer.Option(None, "--profile", "-p", click_type=profile_choice(),
                                help="The shipped profile (default: the config's, else cpu)."),
    run_dir: Path = typer.Option(None, *OUTPUT, "--run-dir", click_type=output_dir(),
                                 help="The run directory to write (default runs/<task>-<profile>-<hash>-flower)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="key=value overrides, e.g. splits.num_clients=100"),
    cpus_per_client: int = typer.Option(1, "--cpus-per-client", help="Ray CPUs per ClientApp."),
    threads: int = typer.Option(None, "--threads", help="torch threads per process (default: config's, else 1)."),
    stop_after: int = typer.Option(0, "--stop-after", help="Stop after this round (resume later)."),
    timeout: float = typer.Option(None, "--timeout", help="Give up after this many seconds."),
    workdir: Path = typer.Option(None, "--workdir", help="Keep Flower's home and logs here (default: temporary)."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N (shortcut for train.device)."),
) -> None:
    """Run a federation on Flower's simulation engine (Ray); writes the same run directory as `fedsafe train`."""
    cfg = _config(config, profile, [*set_, *([f"train.device={device}"] if device else [])], positional)
    from ..flower.simulate import simulate as run_simulation

    rd = run_dir or _default_run_dir(cfg)
    console.print(f"Flower simulation: {cfg.splits.num_clients} clients, {cfg.train.rounds} rounds -> {rd}")
    try:
        out = run_simulation(cfg, rd, cpus_per_client=cpus_per_client, threads=threads, timeout=timeout,
                             stop_after=stop_after, workdir=workdir, keep_workdir=workdir is not None,
                             on_line=_echo_fedsafe)
    except (ValueError, RuntimeError, TimeoutError, FileNotFoundError) as e:
        raise fail(str(e)) from None
    if out.skipped:
        console.print(f"{rd} is already complete: nothing to do.")
        return
    console.print(f"run directory: {out.run_dir}  ({out.seconds:.1f} s wall, peak memory "
                  f"{out.peak_memory_bytes / 2**30:.2f} GiB)")


@app.command("app")
def write_app(directory: Path = typer.Argument(..., help="Folder to write the Flower app project into.")) -> None:
    """Write the Flower app project (pyproject.toml) for `flwr run DIR ...`."""
    from ..flower.app import write_app_project

    console.print(f"Flower app project: {write_app_project(directory) / 'pyproject.toml'}")


@app.command()
def certs(
    directory: Path = typer.Argument(..., help="Folder for ca.pem, server.pem/.key and node keys."),
    nodes: int = typer.Option(3, "--nodes", "-n", help="Node key pairs to make (node_000 ...)."),
    host: list[str] = typer.Option(["127.0.0.1", "localhost"], "--host",
                                   help="SuperLink address(es) for the certificate's SAN (IP or DNS name)."),
    days: int = typer.Option(365, "--days", help="Validity of the certificates."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing CA and server certificate."),
) -> None:
    """Make a CA, the SuperLink's TLS certificate (openssl) and one ECDSA key pair per node (ssh-keygen)."""
    from ..flower.certs import make_certs, make_node_keys

    try:
        paths = make_certs(directory, hosts=host, days=days, overwrite=overwrite)
        keys = make_node_keys(directory, nodes)
    except (RuntimeError, ValueError) as e:
        raise fail(str(e)) from None
    console.print(f"CA: {paths.ca} (keep {paths.ca_key.name} offline)\nSuperLink: {paths.server_cert}, "
                  f"{paths.server_key} (SAN: {', '.join(host)})\nnodes: {keys[0].name} .. {keys[-1].name} "
                  "(give node_III to hospital III, register node_III.pub)")


def _foreground(name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
    from ..flower.processes import ProcessSet

    console.print(f"{name}: {' '.join(argv)}\nlog: {log_path}  (Ctrl-C stops it)")
    with ProcessSet() as procs:
        p = procs.start(name, argv, env=env, log_path=log_path)
        try:
            code = p.wait()
        except KeyboardInterrupt:
            console.print(f"stopping {name} (pid {p.pid})")
            return
    if code:
        raise fail(f"{name} exited with code {code}:\n{p.log_tail()}")


@app.command()
def superlink(
    certs_dir: Path = typer.Option(..., "--certs", help="Folder made by `fedsafe flower certs`."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", help="The SuperLink's one HTTPS port (Fleet, Control, Runtime)."),
    state: Path = typer.Option(Path("superlink-state"), "--state", help="Folder for its database and log."),
    flwr_home: Path = typer.Option(_DEFAULT_HOME, "--flwr-home", help=_HOME_HELP),
) -> None:
    """Start the SuperLink (foreground) with TLS and SuperNode authentication."""
    from ..flower.certs import CertPaths
    from ..flower.command_lines import flower_env, superlink_argv

    state.mkdir(parents=True, exist_ok=True)
    argv = superlink_argv(host=host, port=port, database=state / "superlink.db", certs=CertPaths(certs_dir))
    _foreground("superlink", argv, flower_env(flwr_home), state / "superlink.log")


@app.command()
def register(
    public_keys: list[Path] = typer.Argument(..., help="Node public keys (node_III.pub)."),
    superlink_address: str = typer.Option(..., "--superlink", help="HOST:PORT of the SuperLink."),
    ca: Path = typer.Option(..., "--ca", help="The federation's CA certificate (ca.pem)."),
    flwr_home: Path = typer.Option(_DEFAULT_HOME, "--flwr-home", help=_HOME_HELP),
) -> None:
    """Register SuperNode public keys with the SuperLink (only registered nodes may join)."""
    from ..flower.command_lines import flower_env, register_node, write_flower_config

    write_flower_config(flwr_home, superlink_address, root_certificates=ca)
    env = flower_env(flwr_home)
    for key in public_keys:
        try:
            console.print(register_node(key, env=env))
        except RuntimeError as e:
            raise fail(str(e)) from None


@app.command()
def supernode(
    superlink_address: str = typer.Option(..., "--superlink", help="HOST:PORT of the SuperLink."),
    partition: int = typer.Option(..., "--partition", help="This hospital's fedsafe client index (0..N-1)."),
    num_partitions: int = typer.Option(..., "--num-partitions", help="N, the federation's splits.num_clients."),
    ca: Path = typer.Option(..., "--ca", help="The federation's CA certificate (ca.pem)."),
    key: Path = typer.Option(..., "--key", help="This node's private key (node_III)."),
    port: int = typer.Option(9094, "--port", help="Local ClientApp API port (loopback; one per node on a machine)."),
    threads: int = typer.Option(None, "--threads", help="torch threads of the ClientApp processes."),
    device: str = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N: what this machine trains on "
                               "(default: the config's train.device)."),
    logs: Path = typer.Option(Path("."), "--logs", help="Folder for the node's log."),
    flwr_home: Path = typer.Option(_DEFAULT_HOME, "--flwr-home", help=_HOME_HELP),
) -> None:
    """Start a SuperNode (foreground) holding one partition, with TLS and its node key."""
    from ..flower.command_lines import flower_env, supernode_argv

    try:
        argv = supernode_argv(superlink=superlink_address, port=port, partition=partition,
                              num_partitions=num_partitions, ca=ca, key=key, device=device)
    except ValueError as e:
        raise fail(str(e)) from None
    logs.mkdir(parents=True, exist_ok=True)
    _foreground(f"supernode-{partition}", argv, flower_env(flwr_home, threads=threads),
                logs / f"supernode_{partition:03d}.log")


@app.command("run")
def run_app(
    positional: Path = typer.Argument(None, hidden=True, metavar="[CONFIG]", help=_POSITIONAL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    superlink_address: str = typer.Option(..., "--superlink", help="HOST:PORT of the SuperLink."),
    ca: Path = typer.Option(..., "--ca", help="The federation's CA certificate (ca.pem)."),
    run_dir: Path = typer.Option(..., *OUTPUT, "--run-dir", click_type=output_dir(),
                                 help="The run directory to write, ON THE SUPERLINK'S MACHINE."),
    profile: str = typer.Option(None, "--profile", "-p", click_type=profile_choice(),
                                help="The shipped profile (default: the config's, else cpu)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="key=value overrides."),
    threads: int = typer.Option(None, "--threads", help="torch threads of the ServerApp / ClientApp processes."),
    stop_after: int = typer.Option(0, "--stop-after", help="Stop after this round (resume later)."),
    device: str = typer.Option(None, "--device", help="The ServerApp's device (its defense and evaluation): auto, "
                               "cpu, cuda or cuda:N; each SuperNode uses its own --device."),
    flwr_home: Path = typer.Option(_DEFAULT_HOME, "--flwr-home", help=_HOME_HELP),
) -> None:
    """Submit a fedsafe run to a running SuperLink and stream its log (the run directory is written there)."""
    from ..flower.app import run_config_for, write_app_project
    from ..flower.command_lines import flower_env, flwr_run, write_flower_config

    cfg = _config(config, profile, set_, positional)
    write_flower_config(flwr_home, superlink_address, root_certificates=ca)
    app_dir = write_app_project(flwr_home / "fedsafe-app")
    rc = run_config_for(cfg, run_dir=str(run_dir), threads=threads or cfg.threads, stop_after=stop_after,
                        engine="flower-deployment", device=device or "")
    code = flwr_run(app_dir, rc, env=flower_env(flwr_home), log_path=flwr_home / "flwr_run.log",
                    on_line=lambda line: console.print(line, highlight=False, markup=False))
    if code:
        raise fail(f"flwr run exited with code {code}")


@app.command()
def deploy(
    positional: Path = typer.Argument(None, hidden=True, metavar="[CONFIG]", help=_POSITIONAL_HELP),
    config: Path = typer.Option(None, "--config", "-c", help=_CONFIG_HELP),
    run_dir: Path = typer.Option(None, *OUTPUT, "--run-dir", click_type=output_dir(),
                                 help="The run directory to write (default runs/<task>-<profile>-<hash>-flower)."),
    certs_dir: Path = typer.Option(None, "--certs", help="Certificates and node keys (made if missing)."),
    profile: str = typer.Option(None, "--profile", "-p", click_type=profile_choice(),
                                help="The shipped profile (default: the config's, else cpu)."),
    set_: list[str] = typer.Option([], "--set", "-s", help="key=value overrides."),
    threads: int = typer.Option(None, "--threads", help="torch threads per process."),
    timeout: float = typer.Option(1800.0, "--timeout", help="Give up after this many seconds."),
    workdir: Path = typer.Option(None, "--workdir", help="Flower home and logs (default: temporary)."),
) -> None:
    """All on this machine (127.0.0.1): TLS SuperLink, N registered SuperNodes, the run; everything stopped after."""
    from ..flower.deploy import deploy as run_deploy

    cfg = _config(config, profile, set_, positional)
    rd = run_dir or _default_run_dir(cfg)
    try:
        out = run_deploy(cfg, rd, certs_dir=certs_dir, threads=threads, timeout=timeout, workdir=workdir)
    except (RuntimeError, TimeoutError, ValueError) as e:
        raise fail(str(e)) from None
    if not out.complete:
        raise fail(f"the run did not complete (flwr run exit {out.returncode}); logs in {out.workdir}")
    console.print(f"run directory: {out.run_dir}  ({out.seconds:.1f} s); logs in {out.workdir}")
