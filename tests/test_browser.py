"""The MLflow UI tells the story: a real (tiny) search into its default sqlite store, served by `tunekit ui`
(MLflow's own UI server), read in headless Chromium.

What a person does and sees: in "Model training" mode the experiment opens on the runs table with the
search and, expanded, its trial runs; filtering on ``tags.tunekit.best = "true"`` leaves the best trial;
the parent run's ``report.html`` opens in the Artifacts tab with every decision and its plot.
``TUNEKIT_SCREENSHOTS=<folder>`` keeps ``experiment.png`` and ``report.png`` there.

On a first visit MLflow 3.17's and 3.18's UI opens every experiment on the GenAI overview (the control test
shows it), tunekit's ``mlflow.experimentKind = custom_model_development`` tag or not: the landing view follows
the sidebar's GenAI / Model training switch, or the URL's ``?workflowType=machine_learning``. So the
store is served the way a user serves it, with ``tunekit ui``, and the link it prints must open the
runs table.

Needs Debian's ``chromium`` and ``chromium-driver`` (skipped without them, see tests/conftest.py; a
Chromium that is there but fails is a failure). Selenium is pointed at /usr/bin/chromedriver, so
Selenium Manager never downloads anything.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CHROMEDRIVER, CHROMIUM, tiny_preset_dict
from tests.test_recipe import SEARCH as RECIPE_SEARCH

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.ray]

#: The UI takes seconds to load on a 2-core machine; every wait is explicit and this generous.
WAIT_S = 60
PHASES = ["range_test", "momentum", "final"]
#: A cheap real search with a plot of each kind: two range tests, two 3-epoch momentum runs, one 6-epoch final training.
SEARCH = {
    "range_test": {**RECIPE_SEARCH["range_test"], "weight_decays": [1e-4, 0.0]},
    "momentum": {**RECIPE_SEARCH["momentum"], "epochs": 3},
    "final": {"epochs": 6, "replicates": 1},
}
#: Only in the GenAI overview, never in the runs table: its token-usage charts (MLflow 3.17), or, in an
#: experiment without traces, its first-trace guide (3.18).
GENAI_OVERVIEW_TEXTS = ("Token Usage", "Send your first trace to MLflow in just a minute")


# ------------------------------------------------------------------------------------------ fixtures


@dataclass
class Logged:
    """What the search left in MLflow, read back with MlflowClient."""

    url: str
    links: dict[str, str]  # what `tunekit ui` printed: experiment (or newest search) name → its page
    experiment_id: str
    parent_id: str
    parent_name: str
    trials: dict[str, str]  # run id → run name, every nested trial run
    best_id: str
    best_name: str
    plain_experiment_id: str  # created without the experiment-kind tag, one run in it
    artifacts: set[str]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def tunekit_ui(storage: Path, port: int, log_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`tunekit ui --storage STORAGE` as a user starts it: the UI's address and the links it printed (name → URL)."""
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "tunekit.cli", "ui", "--storage", str(storage), "--port", str(port)]
    with log_path.open("wb") as log:
        # its own process group: `mlflow ui` runs uvicorn and a job runner as children
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 120
            while True:
                if server.poll() is not None:
                    pytest.fail(f"tunekit ui exited ({server.returncode}):\n{log_path.read_text()[-3000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                        if answer.status == 200:
                            break
                except (urllib.error.URLError, OSError):
                    pass
                if time.monotonic() > deadline:
                    pytest.fail(f"tunekit ui did not answer in 120 s:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.5)
            printed = re.findall(r"^(?:experiment|newest search) (\S+): (http\S+)", log_path.read_text(), re.M)
            yield url, dict(printed)
        finally:
            with_group(server, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with_group(server, signal.SIGKILL)
                server.wait(timeout=10)


def with_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        os.killpg(process.pid, sig)


@pytest.fixture(scope="module")
def logged(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Logged]:
    """One real search into its default store (sqlite beside the runs, as `make demo`'s), a plain experiment
    beside it, and `tunekit ui` serving the store."""
    from mlflow.tracking import MlflowClient

    import tunekit

    root = tmp_path_factory.mktemp("browser-search")
    storage = root / "runs"
    result = tunekit.search(
        tiny_preset_dict(search=SEARCH),
        name="browser",
        storage=str(storage),
        phases=PHASES,
        experiment="tunekit-browser",
        progress=False,
    )
    client = MlflowClient(result.tracking_uri)
    parent = client.get_run(result.run_id)
    children = client.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    best = [c for c in children if c.data.tags.get("tunekit.best") == "true"]
    assert len(best) == 1, f"one trial run tagged tunekit.best, not {len(best)}"
    assert len(children) > 1, "the filter must have runs to leave out"
    # the control: an experiment made the plain way, without tunekit's experiment-kind tag, with one finished run
    plain = client.create_experiment("plain")
    client.set_terminated(client.create_run(plain, run_name="plain-run").info.run_id)
    with tunekit_ui(storage, free_port(), root / "ui.log") as (url, links):
        yield Logged(
            url=url,
            links=links,
            experiment_id=parent.info.experiment_id,
            parent_id=parent.info.run_id,
            parent_name=parent.info.run_name,
            trials={c.info.run_id: c.info.run_name for c in children},
            best_id=best[0].info.run_id,
            best_name=best[0].info.run_name,
            plain_experiment_id=plain,
            artifacts={a.path for a in client.list_artifacts(parent.info.run_id)},
        )


@pytest.fixture(scope="module")
def driver() -> Iterator[Any]:
    """Headless Chromium driven by /usr/bin/chromedriver (given explicitly: Selenium Manager stays out)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1600,1000"):
        options.add_argument(argument)
    browser = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    browser.set_page_load_timeout(WAIT_S)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def screenshots() -> Path | None:
    folder = os.environ.get("TUNEKIT_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder)
    path.mkdir(parents=True, exist_ok=True)
    return path


# ------------------------------------------------------------------------------------------- helpers


def wait_for(driver: Any, condition: Callable[[Any], Any], what: str, timeout: float = WAIT_S) -> Any:
    """``condition``'s first truthy answer; the grid re-renders as it loads, so a stale or covered element is asked again."""
    from selenium.common.exceptions import (
        ElementClickInterceptedException,
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
    )
    from selenium.webdriver.support.ui import WebDriverWait

    ignored = (NoSuchElementException, StaleElementReferenceException, ElementClickInterceptedException)
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.25, ignored_exceptions=ignored).until(condition)
    except TimeoutException:  # where the page is when the wait gives up, not where it was when the wait began
        raise TimeoutException(f"{what} (waited {timeout} s; at {driver.current_url})") from None


def click(driver: Any, xpath: str, what: str) -> None:
    """Click the element at ``xpath`` once it is there and takes the click."""
    from selenium.webdriver.common.by import By

    wait_for(driver, lambda d: d.find_element(By.XPATH, xpath).click() or True, what)


def first_visit(driver: Any, url: str, model_training: bool = False) -> None:
    """The browser of someone opening this MLflow for the first time: nothing remembered from earlier tests.

    ``model_training``: someone who already chose the sidebar's "Model training" switch (the UI remembers it)."""
    driver.get(f"{url}/health")  # same origin, no app: its storage can be cleared before the UI reads it
    driver.delete_all_cookies()
    remembered = {
        # the assistant panel opens itself on a first visit and covers a quarter of the page (screenshots only)
        "mlflow.assistant.fab.autoOpenedOnFirstLoad_v1": "true",
        "mlflow.assistant.panelOpen_v1": "false",
    }
    if model_training:
        remembered["mlflow.workflowType_v1"] = '"machine_learning"'
    driver.execute_script(
        "localStorage.clear(); sessionStorage.clear(); for (const [k, v] of Object.entries(arguments[0])) localStorage.setItem(k, v);",
        remembered,
    )


def route(driver: Any) -> str:
    """The UI's route: ``/experiments/1/runs`` of ``http://…/#/experiments/1/runs?…``."""
    return urllib.parse.urlsplit(driver.current_url).fragment.split("?")[0]


def opened_view(driver: Any) -> str | None:
    """Which landing view the experiment page settled on, by what is on the page; None while loading."""
    from selenium.webdriver.common.by import By

    path = route(driver)
    if re.fullmatch(r"/experiments/[^/]+/runs", path) and driver.find_elements(
        By.XPATH, "//*[@role='columnheader'][normalize-space()='Run Name']"
    ):
        return "runs table"
    if re.fullmatch(r"/experiments/[^/]+/overview(/.*)?", path) and any(
        driver.find_elements(By.XPATH, f"//*[normalize-space(text())='{text}']") for text in GENAI_OVERVIEW_TEXTS
    ):
        return "GenAI overview"
    return None


def open_experiment(driver: Any, logged: Logged, experiment_id: str) -> str:
    first_visit(driver, logged.url)
    driver.get(f"{logged.url}/#/experiments/{experiment_id}")
    return wait_for(driver, opened_view, f"experiment {experiment_id} opened neither the runs table nor the GenAI overview")


def table_runs(driver: Any) -> dict[str, str]:
    """Run id → the name the runs table shows for it (read in one go: the grid re-renders while it loads)."""
    links = driver.execute_script(
        "return [...document.querySelectorAll('[role=gridcell] a[href*=\"/runs/\"]')]"
        ".filter(a => a.offsetParent !== null).map(a => [a.getAttribute('href'), a.textContent.trim()])"
    )
    return {href.rstrip("/").rsplit("/runs/", 1)[1]: name for href, name in links}


# --------------------------------------------------------------------------------------------- tests


def test_a_plain_experiment_opens_on_the_genai_overview(driver: Any, logged: Logged) -> None:
    """The control: MLflow 3's UI opens an experiment on the GenAI overview (traces, token usage) by default."""
    assert open_experiment(driver, logged, logged.plain_experiment_id) == "GenAI overview"


def test_the_link_tunekit_ui_prints_opens_the_runs_table(driver: Any, logged: Logged) -> None:
    """On a first visit, the link `tunekit ui` prints lands on the runs table, with the search in it."""
    link = logged.links["tunekit-browser"]
    first_visit(driver, logged.url)
    driver.get(link)
    assert wait_for(driver, opened_view, f"{link} opened neither the runs table nor the GenAI overview") == "runs table"
    assert route(driver) == f"/experiments/{logged.experiment_id}/runs"
    shown = wait_for(
        driver, lambda d: logged.parent_id in (runs := table_runs(d)) and runs, "the search's run is not in the table"
    )
    assert shown[logged.parent_id] == logged.parent_name
    # and the newest search's link is its run
    assert f"/runs/{logged.parent_id}?" in logged.links[logged.parent_name]


def test_the_runs_table_shows_the_search_and_finds_the_best_run(driver: Any, logged: Logged, screenshots: Path | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    # as a person gets there: the experiments list, the sidebar's "Model training" switch, the experiment's name
    first_visit(driver, logged.url)
    driver.get(f"{logged.url}/#/experiments")
    click(driver, "//*[@role='button'][normalize-space()='Model training']", "no Model training switch")
    click(driver, "//a[normalize-space()='tunekit-browser']", "the experiment is not listed")
    assert wait_for(driver, opened_view, "the experiment page did not settle") == "runs table"
    assert route(driver) == f"/experiments/{logged.experiment_id}/runs"

    # the search's parent run, then its nested trial runs once its row is expanded (the + button beside its name)
    shown = wait_for(
        driver, lambda d: logged.parent_id in (runs := table_runs(d)) and runs, "the search's run is not in the table"
    )
    assert shown[logged.parent_id] == logged.parent_name
    expand = f"//*[@role='gridcell'][.//a[contains(@href, '/runs/{logged.parent_id}')]]//button"
    click(driver, expand, "the search's row has no expand button")
    shown = wait_for(driver, lambda d: set(logged.trials) <= set(runs := table_runs(d)) and runs, "the trial runs did not show")
    assert {run_id: shown[run_id] for run_id in logged.trials} == logged.trials
    if screenshots:
        driver.save_screenshot(str(screenshots / "experiment.png"))

    # the best trial by its tag, typed into the search box the way a person would
    query = 'tags.tunekit.best = "true"'
    box = wait_for(driver, lambda d: d.find_element(By.CSS_SELECTOR, "input[data-testid='search-box']"), "no search box")
    box.clear()
    box.send_keys(query, Keys.ENTER)
    shown = wait_for(
        driver,
        lambda d: logged.best_id in (runs := table_runs(d)) and set(runs) <= {logged.parent_id, logged.best_id} and runs,
        f"the table did not narrow to the best run {logged.best_name}",
    )
    assert urllib.parse.parse_qs(urllib.parse.urlsplit(driver.current_url).fragment.split("?", 1)[1])["searchFilter"] == [query]
    # of the trials only the best one; the search's run may stay above it as its group
    assert set(shown) & set(logged.trials) == {logged.best_id}
    assert shown[logged.best_id] == logged.best_name


def test_the_report_shows_every_decision_with_its_plot(driver: Any, logged: Logged, screenshots: Path | None) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    assert "report.html" in logged.artifacts, f"no report.html on the search's run: {sorted(logged.artifacts)}"
    # the run's page (the link MLflow prints), its Artifacts tab, report.html: MLflow shows HTML in an iframe
    first_visit(driver, logged.url, model_training=True)
    driver.get(f"{logged.url}/#/experiments/{logged.experiment_id}/runs/{logged.parent_id}")
    click(driver, "//*[@role='tab'][normalize-space()='Artifacts']", "no Artifacts tab")
    click(driver, "//*[normalize-space(text())='report.html']", "report.html is not listed")
    viewer = (By.CSS_SELECTOR, "iframe.mlflow-html-iframe")
    wait_for(driver, ec.frame_to_be_available_and_switch_to_it(viewer), "the artifact viewer showed no page")

    page = wait_for(driver, report_loaded, "the report's decisions and their images did not load")
    for phase in PHASES:
        sections = [s for s in page["sections"] if phase_named(s["heading"], phase)]
        assert sections, f"no section headed {phase}: {[s['heading'] for s in page['sections']]}"
        assert sections[0]["images"] >= 1, f"the {phase} decision has no plot"
    broken = [i for i in page["images"] if not (i["complete"] and i["width"] > 0)]
    assert not broken, f"images that did not load: {broken}"
    assert all(i["src"].startswith("data:image/png;base64,") for i in page["images"]), "the plots are not embedded"

    if screenshots:  # a window tall enough for the whole report inside the viewer
        driver.switch_to.default_content()
        size = driver.get_window_size()
        grow = page["height"] - driver.find_element(*viewer).size["height"] + 40
        driver.set_window_size(size["width"], size["height"] + max(grow, 0))
        wait_for(driver, ec.frame_to_be_available_and_switch_to_it(viewer), "the artifact viewer went away")
        fits = "return innerHeight >= document.documentElement.scrollHeight"
        wait_for(driver, lambda d: report_loaded(d) and d.execute_script(fits), "the report did not fit the taller window")
        # the plots decoded and painted: the viewer may have reloaded the page for its new size
        driver.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "Promise.all([...document.images].map(i => i.decode())).then(() => requestAnimationFrame(() => requestAnimationFrame(done)));"
        )
        driver.switch_to.default_content()
        driver.save_screenshot(str(screenshots / "report.png"))
        driver.set_window_size(size["width"], size["height"])


def report_loaded(driver: Any) -> dict[str, Any] | bool:
    """The report page inside the viewer once every phase has its section and every image is complete; else False."""
    page = driver.execute_script(
        "return {sections: [...document.querySelectorAll('section')].map(s => ({"
        "  heading: (s.querySelector('h2') || {}).textContent || '', images: s.querySelectorAll('img').length})),"
        " images: [...document.images].map(i => ({complete: i.complete, width: i.naturalWidth, src: i.src.slice(0, 30)})),"
        " height: document.documentElement.scrollHeight}"
    )
    phases = all(any(phase_named(s["heading"], phase) for s in page["sections"]) for phase in PHASES)
    return page if phases and page["images"] and all(i["complete"] for i in page["images"]) else False


def phase_named(heading: str, phase: str) -> bool:
    """``2. final: metric = test_acc`` names ``final``."""
    return re.search(rf"(?<![\w.]){re.escape(phase)}(?!\w)", heading) is not None
