"""One writer per release, on the real cluster: two helm_deploy runs of one release at once, a smoke
test failing while another deploy finished, SIGTERM at several points of helm_deploy and
smoke_test, and a SIGKILLed holder's lock expiring. Helm 4 only (the lock is the toolkit's, not helm's)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.realcluster import RELEASE, Site, apps
from tests.waiting import eventually
from tools.settings import REPO_ROOT

pytestmark = pytest.mark.testbed
NOISE = ("Traceback", "Exception ignored", "Task was destroyed", "Event loop is closed", "Unknown child process")


@pytest.fixture
def site(site: Site, monkeypatch: pytest.MonkeyPatch) -> Site:
    """conftest's new site with revision 1 installed (not waited for), by Helm 4."""
    monkeypatch.delenv("HELM_BIN", raising=False)
    assert site.secrets().returncode == 0
    installed = site.deploy("--no-wait")
    assert installed.returncode == 0, installed.stdout + installed.stderr
    return site


class Run:
    """A tool started in the background (its own session, like a CI job's process), output to a file."""

    def __init__(self, site: Site, tool: str, *args: str) -> None:
        self.log = site.folder / f"{tool}-{time.monotonic_ns()}.log"
        with open(self.log, "w") as handle:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", f"tools.{tool}", *site.argv(*args)],
                cwd=REPO_ROOT,
                stdout=handle,
                stderr=subprocess.STDOUT,
                env={**os.environ, "NO_COLOR": "1"},
                start_new_session=True,
            )

    def text(self) -> str:
        return self.log.read_text()

    def until(self, condition: Callable[[], bool], what: str, seconds: float = 90) -> None:
        """Once `condition` holds, while the tool still runs: polled often, a signal aims at a short state."""

        def reached() -> bool:
            if condition():
                return True
            assert self.proc.poll() is None, f"exited {self.proc.returncode} before {what}:\n{self.text()}"
            return False

        eventually(reached, lambda: f"{what}:\n{self.text()}", seconds, pause=0.05)

    def wait(self) -> tuple[int, str]:
        try:
            code = self.proc.wait(timeout=300)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return code, self.text()


def lease(site: Site) -> dict:
    """The release's Lease as the API server has it ({} when there is none yet)."""
    from tools.kube_client import ApiError, Kube, path

    with Kube(site.kubeconfig) as kube:
        try:
            return kube.get(path("leases", site.namespace, f"{RELEASE}-writer"))  # type: ignore[no-any-return]
        except ApiError as exc:
            if exc.status == 404:
                return {}
            raise


def holder(site: Site) -> str:
    return (lease(site).get("spec") or {}).get("holderIdentity") or ""


def descriptions(site: Site) -> list[str]:
    from tools.helm import helm_binary

    proc = subprocess.run(
        [helm_binary(), "history", RELEASE, "-n", site.namespace, "-o", "json", "--kubeconfig", site.kubeconfig],
        capture_output=True,
        text=True,
        check=True,
    )
    return [r["description"] for r in json.loads(proc.stdout)]


def helm_children(namespace: str) -> list[str]:
    """helm processes still working on this namespace (a stopped run must leave none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"helm") and namespace.encode() in b" ".join(argv):
                found.append(b" ".join(argv).decode())
    return found


def max_user_pods(site: Site) -> str:
    deployment = apps(site.kubeconfig).read_namespaced_deployment(f"{RELEASE}-backend", site.namespace)
    return {e.name: e.value for e in deployment.spec.template.spec.containers[0].env}["MAX_USER_PODS"]


def values_file(site: Site, pods: int) -> str:
    path = site.folder / f"values-{pods}.yaml"
    path.write_text(f"backend:\n  config:\n    maxUserPods: {pods}\n")
    return str(path)


# -- two writers ---------------------------------------------------------------------------------------
def test_two_deploys_at_once_the_second_waits_and_nothing_is_rolled_back(site: Site) -> None:
    images = ["--images", str(site.stand_ins.images_file), "--values", values_file(site, 7)]
    first = Run(site, "helm_deploy", *images)
    first.until(lambda: f"pid {first.proc.pid}" in holder(site), "lock held by the first deploy")
    second = Run(site, "helm_deploy", *images)
    (code1, out1), (code2, out2) = first.wait(), second.wait()
    assert code1 == 0 and code2 == 0, out1 + out2
    assert f"waiting for the lock of release {RELEASE}: held by helm_deploy by " in out2
    assert f"pid {first.proc.pid}" in out2 and "lock of release cmbcluster taken after waiting" in out2
    # the second finds the first's release, which is its own: no new revision
    assert "release cmbcluster: unchanged (revision 2), nothing to upgrade" in out2
    assert site.history() == [(1, "superseded"), (2, "deployed")]
    assert not any("Rollback" in d for d in descriptions(site))
    assert max_user_pods(site) == "7"
    assert holder(site) == ""  # released


def test_a_failing_smoke_test_leaves_another_deploys_newer_revision_alone(site: Site, tmp_path: Path) -> None:
    from tools import helm_deploy
    from tools.kube_client import Kube
    from tools.lease import ReleaseLock

    bad = site.deploy("--no-wait", images=site.stand_ins.with_backend(tmp_path, "crash"))
    assert bad.returncode == 0, bad.stderr
    # Order the race: the operator's deploy holds the lock (as its own process would) when smoke fails.
    with Kube(site.kubeconfig) as api, ReleaseLock(api, site.namespace, RELEASE, "helm_deploy", duration=600):
        impatient = site.deploy("--no-wait", "--lock-wait", "0")  # asked not to wait: fails at once, one line
        assert impatient.returncode == 1, impatient.stdout + impatient.stderr
        assert impatient.stderr.splitlines()[-1].startswith(f"error   release {RELEASE} is locked by helm_deploy by ")
        assert f"pid {os.getpid()} since " in impatient.stderr and "run again with --lock-wait" in impatient.stderr
        smoke = Run(site, "smoke_test", "--no-endpoints", "--no-storage-check", "--grace", "1", "--deadline", "60")
        smoke.until(lambda: "waiting for the lock of release" in smoke.text(), "smoke waiting for the lock")
        assert "rollout failed" in smoke.text()
        assert helm_deploy.main(site.argv("--images", str(site.stand_ins.images_file), "--no-wait")) == 0
        code, out = smoke.wait()
    assert code == 1, out
    assert (
        f"release {RELEASE} is now at revision 3 (deployed), not revision 2 that this run judged: another "
        "writer changed it, so this run rolls nothing back"
    ) in out
    assert site.history() == [(1, "superseded"), (2, "superseded"), (3, "deployed")]
    assert not any("Rollback" in d for d in descriptions(site))


# -- stops ---------------------------------------------------------------------------------------------
def stopped(run: Run, where: str, signum: signal.Signals = signal.SIGTERM) -> str:
    run.proc.send_signal(signum)
    code, out = run.wait()
    assert code == 128 + signum, out
    for noise in NOISE:
        assert noise not in out, out
    stops = [line for line in out.splitlines() if "stopped by" in line]
    assert len(stops) == 1 and stops[0].startswith(f"error   stopped by {signum.name} {where}"), out
    assert out.rstrip().endswith(stops[0]) and "temporary credentials were removed" in stops[0]
    return out


def test_sigterm_anywhere_in_helm_deploy_and_smoke_is_one_line_and_the_next_run_converges(
    site: Site, tmp_path: Path
) -> None:
    good = ["--images", str(site.stand_ins.images_file)]
    # 1. before the upgrade: nothing changed
    run = Run(site, "helm_deploy", *good, "--no-wait")
    run.until(lambda: "preflight of local cluster" in run.text(), "preflight")
    stopped(run, "before changing the release: the release was not changed")
    assert holder(site) == "" and site.history() == [(1, "deployed")]

    # 2. during the upgrade (helm waits for a backend that never gets ready): helm is stopped and reaped
    unready = site.stand_ins.with_backend(tmp_path, "unready")
    run = Run(site, "helm_deploy", "--images", str(unready), "--timeout", "120s")
    run.until(lambda: (2, "pending-upgrade") in site.history(), "revision 2 pending")
    stopped(run, f"during helm upgrade of release {RELEASE} to revision 2")
    assert helm_children(site.namespace) == [] and holder(site) == ""
    again = site.deploy("--no-wait", "--timeout", "10m")  # at once: no age rule for the toolkit's own revision
    assert again.returncode == 0, again.stdout + again.stderr
    assert site.history()[-1][1] == "deployed"

    # 3. during a rollback of a failed upgrade
    before = site.history()[-1][0]
    crash = site.stand_ins.with_backend(tmp_path, "crash")
    run = Run(site, "helm_deploy", "--images", str(crash), "--timeout", "8s")
    annotation = "cmbcluster.io/writing-revision"
    run.until(
        lambda: (lease(site)["metadata"].get("annotations") or {}).get(annotation) == str(before + 2),
        "the rollback's revision in the lock",
    )
    stopped(run, f"while rolling release {RELEASE} back to revision {before}")
    assert helm_children(site.namespace) == [] and holder(site) == ""
    again = site.deploy("--no-wait", "--timeout", "10m")
    assert again.returncode == 0, again.stdout + again.stderr
    assert site.history()[-1][1] == "deployed"

    # 4. smoke_test during its watch (Ctrl-C this time): nothing changed, nothing rolled back
    history = site.history()
    run = Run(site, "smoke_test", "--no-endpoints", "--no-storage-check")
    run.until(lambda: "watching the rollout" in run.text(), "the rollout watch")
    stopped(run, "during the smoke test's checks: nothing was changed", signal.SIGINT)
    assert site.history() == history
    again = site.smoke("--no-storage-check")
    assert again.returncode == 0, again.stdout + again.stderr


# -- a dead holder ---------------------------------------------------------------------------------------
def test_a_killed_holders_lock_expires_and_the_next_deploy_recovers_its_revision(site: Site, tmp_path: Path) -> None:
    crash = site.stand_ins.with_backend(tmp_path, "crash")
    victim = Run(site, "helm_deploy", "--images", str(crash), "--timeout", "120s", "--lock-duration", "3")
    victim.until(lambda: (2, "pending-upgrade") in site.history(), "revision 2 pending")
    os.killpg(victim.proc.pid, signal.SIGKILL)
    victim.wait()
    assert f"pid {victim.proc.pid}" in holder(site)

    recovered = site.deploy("--no-wait", "--timeout", "10m")
    text = recovered.stdout + recovered.stderr
    assert recovered.returncode == 0, text
    assert f"the lock of release {RELEASE} held by helm_deploy by " in text and f"pid {victim.proc.pid}" in text
    assert "expired (not renewed for 3s" in text and "its holder died): taken over" in text
    assert f"release {RELEASE} revision 2 is pending-upgrade: made by helm_deploy by " in text
    assert "which no longer holds the release's lock: recovering it now" in text
    assert site.history() == [(1, "superseded"), (2, "pending-upgrade"), (3, "superseded"), (4, "deployed")]
