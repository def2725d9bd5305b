"""The probe's script (image/probe.py), run here with this venv's Python instead of inside an image, the way
the container runs it (its bootstrap command, the script then the requests on stdin): each distinct entry
point is imported once however many deployments declare it, each result still answers its own request, in
order, and an import error is reported for every deployment of that entry point. The requests may come long
after the script: Prefect is imported meanwhile, and nothing about the deployments is on the command line."""
from __future__ import annotations

import json
import subprocess
import sys
import threading

from slipway.image.probe import PROBE_BOOTSTRAP, PROBE_MARKER, requests_line, script_line

FLOW = '''
import pathlib
from prefect import flow

with open(pathlib.Path(__file__).with_name("imports.log"), "a") as log:
    log.write("imported\\n")
print("flow modules may print on import")


@flow(name="daily-{n}")
def main(count: int, label: str = "x"):
    return count
'''


def run_script(tmp_path, requests):
    for n in (1, 2):
        (tmp_path / f"flow{n}.py").write_text(FLOW.replace("{n}", str(n)))
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    done = subprocess.run([sys.executable, "-c", PROBE_BOOTSTRAP], input=script_line() + requests_line(requests),
                          cwd=tmp_path, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    [line] = [line for line in done.stdout.decode().splitlines() if line.startswith(PROBE_MARKER)]
    return json.loads(line[len(PROBE_MARKER):]), (tmp_path / "imports.log").read_text().count("imported")


def test_each_entry_point_is_imported_once_and_every_deployment_gets_its_answer(tmp_path):
    requests = ([{"entrypoint": "flow1.py:main", "parameter_sets": [{"count": i}]} for i in range(30)]
                + [{"entrypoint": "flow2.py:main", "parameter_sets": [{"count": "many"}, {"label": "y"}]},
                   {"entrypoint": "broken.py:main", "parameter_sets": [{}]},
                   {"entrypoint": "flow1.py:main", "parameter_sets": [{"count": 3}, {"count": "three"}]},
                   {"entrypoint": "broken.py:main", "parameter_sets": [{}]}])
    results, imports = run_script(tmp_path, requests)
    assert imports == 2  # flow1.py and flow2.py once each, for 33 deployments
    assert [r["entrypoint"] for r in results] == [r["entrypoint"] for r in requests]
    assert {r["flow_name"] for r in results[:30]} == {"daily-1"}
    assert all(r["parameter_checks"] == [""] for r in results[:30])
    assert results[30]["flow_name"] == "daily-2"
    assert results[30]["parameter_schema"]["required"] == ["count"]
    bad, missing = results[30]["parameter_checks"]
    assert bad and "count" in bad  # "many" is not an int
    assert missing is None  # required parameters arrive with the run
    assert "not_a_module_anywhere" in results[31]["error"] and results[33]["error"] == results[31]["error"]
    assert results[32]["parameter_checks"][0] == "" and results[32]["parameter_checks"][1]



def test_the_script_imports_prefect_before_its_requests_arrive(tmp_path):
    """Started first and asked later, as a release runs it: Prefect's import finishes (Python's own
    -X importtime line for prefect.flows) while the probe still waits for its requests, then it answers."""
    (tmp_path / "flow1.py").write_text(FLOW.replace("{n}", "1"))
    probe = subprocess.Popen([sys.executable, "-X", "importtime", "-c", PROBE_BOOTSTRAP], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    imported, stderr = threading.Event(), []

    def read_stderr() -> None:
        for line in probe.stderr:
            stderr.append(line)
            if line.rstrip().endswith(b"| prefect.flows"):
                imported.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        probe.stdin.write(script_line())
        probe.stdin.flush()
        assert imported.wait(120), b"".join(stderr).decode()[-2000:]
        probe.stdin.write(requests_line([{"entrypoint": "flow1.py:main", "parameter_sets": [{"count": 1}]}]))
        probe.stdin.close()
        out = probe.stdout.read()
        assert probe.wait(120) == 0
    finally:
        probe.kill()
    [line] = [line for line in out.decode().splitlines() if line.startswith(PROBE_MARKER)]
    assert json.loads(line[len(PROBE_MARKER):])[0]["flow_name"] == "daily-1"
