"""The CLI against GCP: saved contexts, URL resolution, the token source it picks, its messages."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli import api_client, target
from cli.api_client import CommandError, Refusal
from cli.contexts import Context, ContextError, ContextStore
from cli.google_tokens import GCLOUD_AUDIENCE, GoogleTokens, NoCredentials, print_identity_token
from cli.main import main
from cli.target import Choice, Target, TargetError

STATUS = "https://europe-west1-my-proj-1.cloudfunctions.net/hekaton-status"
CONTROL = "https://europe-west1-my-proj-1.cloudfunctions.net/hekaton-control"


def _jwt(exp: float, secret_marker: str = "sig") -> str:
    """A JWT-shaped token (only its payload's exp is read by the CLI)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).decode().rstrip("=")

    return f"{part({'alg': 'RS256'})}.{part({'exp': exp, 'aud': 'x'})}.{secret_marker}"


@pytest.fixture(autouse=True)
def _flags_reset() -> Any:
    yield
    target.choose(Choice())


# --- contexts --------------------------------------------------------------------------------------


def test_contexts_round_trip_and_store_no_secret(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    assert store.add("prod", Context(project="my-proj-1", region="europe-west1")) is True
    assert store.add("prod", Context(project="my-proj-1", region="us-central1")) is False
    store.add("stage", Context(project="my-stage-2", status_url="https://s.example/x"))
    store.use("prod")
    assert store.current() == "prod"
    assert store.get("prod").region == "us-central1"
    assert set(store.all()) == {"prod", "stage"}
    saved = json.loads((tmp_path / "contexts.json").read_text())
    assert saved["contexts"]["prod"] == {"project": "my-proj-1", "region": "us-central1"}
    assert "token" not in (tmp_path / "contexts.json").read_text().lower()
    store.remove("prod")
    assert store.current() is None and set(store.all()) == {"stage"}
    store.use("local")
    assert store.current() is None


@pytest.mark.parametrize(
    ("name", "context", "field"),
    [
        ("Prod", Context(project="my-proj-1"), "context name"),
        ("local", Context(project="my-proj-1"), "context name"),
        ("p", Context(project="UPPER"), "project 'UPPER'"),
        ("p", Context(project="my-proj-1", region="mars"), "region 'mars'"),
        ("p", Context(project="my-proj-1", status_url="ftp://x"), "status_url"),
    ],
)
def test_a_bad_context_is_refused_naming_the_field(
    tmp_path: Path, name: str, context: Context, field: str
) -> None:
    with pytest.raises(ContextError, match=field):
        ContextStore(tmp_path).add(name, context)
    assert not (tmp_path / "contexts.json").exists()


def test_a_corrupt_contexts_file_names_itself_and_the_fix(tmp_path: Path) -> None:
    (tmp_path / "contexts.json").write_text("{not json")
    with pytest.raises(ContextError, match=r"contexts.json is unreadable .*delete it"):
        ContextStore(tmp_path).all()


def test_using_an_unknown_context_lists_the_known_ones(tmp_path: Path) -> None:
    store = ContextStore(tmp_path)
    store.add("prod", Context(project="my-proj-1", region="europe-west1"))
    with pytest.raises(ContextError, match=r"no context 'prud' \(known: prod\)"):
        store.use("prud")


# --- which deployment, which URLs ------------------------------------------------------------------


def test_project_and_region_flags_give_the_2nd_gen_function_urls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEKATON_PROJECT", raising=False)
    target.choose(Choice(project="my-proj-1", region="europe-west1"))
    chosen = target.resolve()
    assert (chosen.status_url, chosen.control_url) == (STATUS, CONTROL)
    assert chosen.google is not None and chosen.pubsub_emulator_host is None


def test_flags_override_the_current_context_field_by_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HEKATON_PROJECT", raising=False)
    store = ContextStore()
    store.add("prod", Context(project="my-proj-1", region="us-central1"))
    store.use("prod")
    assert target.resolve().status_url == STATUS.replace("europe-west1", "us-central1")
    target.choose(Choice(context="prod", status_url="https://hekaton-status-abc.a.run.app"))
    chosen = target.resolve()
    assert chosen.status_url == "https://hekaton-status-abc.a.run.app"
    assert chosen.control_url == CONTROL.replace("europe-west1", "us-central1")


def test_the_local_context_and_hekaton_project_bypass_the_current_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ContextStore()
    store.add("prod", Context(project="my-proj-1", region="us-central1"))
    store.use("prod")
    monkeypatch.setenv("HEKATON_STATE_DIR", str(tmp_path / "none"))
    monkeypatch.delenv("HEKATON_PROJECT", raising=False)
    target.choose(Choice(context="local"))
    with pytest.raises(TargetError, match="no local stack is running"):
        target.resolve()
    target.choose(Choice())
    monkeypatch.setenv("HEKATON_PROJECT", "emulated")
    monkeypatch.setenv("HEKATON_STATUS_URL", "http://127.0.0.1:1")
    assert target.resolve().google is None


def test_a_project_without_region_or_url_says_what_to_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HEKATON_PROJECT", raising=False)
    target.choose(Choice(project="my-proj-1"))
    with pytest.raises(TargetError, match="pass --region R"):
        target.resolve()
    target.choose(Choice(region="europe-west1"))
    with pytest.raises(TargetError, match="need --project or --context"):
        target.resolve()


def test_context_commands_through_the_console_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["context", "add", "prod", "--project", "my-proj-1", "--region", "europe-west1"]) == 0
    )
    assert "added context prod" in capsys.readouterr().out
    assert main(["context", "use", "prod"]) == 0
    assert main(["context", "list"]) == 0
    listing = capsys.readouterr().out
    assert f"* prod                 my-proj-1                {STATUS}" in listing
    assert main(["context", "use", "nope"]) == 2
    assert "no context 'nope'" in capsys.readouterr().err
    assert main(["context", "add", "x", "--project", "Bad"]) == 2
    assert "not a GCP project id" in capsys.readouterr().err


# --- which token ------------------------------------------------------------------------------------


class Sources:
    """Fake google-auth and gcloud: record calls, answer or refuse."""

    def __init__(self, fetch: str | None = None, gcloud: str | None = None) -> None:
        self.fetch_answer, self.gcloud_answer = fetch, gcloud
        self.calls: list[tuple[str, str]] = []

    def fetch(self, audience: str) -> str:
        self.calls.append(("google-auth", audience))
        if self.fetch_answer is None:
            raise NoCredentials("google-auth found no credentials (none)")
        return self.fetch_answer

    def gcloud(self, audience: str, impersonate: str | None) -> str:
        self.calls.append(("gcloud", f"{audience} as {impersonate}" if impersonate else ""))
        if self.gcloud_answer is None:
            raise NoCredentials("`gcloud auth print-identity-token` failed: no active account")
        return self.gcloud_answer

    def tokens(self, env: dict[str, str], *, has_gcloud: bool = True, now: float = 0.0) -> Any:
        return GoogleTokens(
            fetch=self.fetch,
            gcloud=self.gcloud,
            env=env,
            which=lambda _name: "/usr/bin/gcloud" if has_gcloud else None,
            clock=lambda: now,
        )


def test_an_explicit_token_wins_over_every_source() -> None:
    sources = Sources(fetch="sa", gcloud="user")
    assert sources.tokens({"HEKATON_TOKEN": " given \n"}).token(STATUS) == "given"
    assert sources.calls == []


def test_a_service_account_key_gets_a_token_for_the_url_and_gcloud_is_not_asked() -> None:
    sources = Sources(fetch=_jwt(10_000), gcloud="user")
    tokens = sources.tokens({"GOOGLE_APPLICATION_CREDENTIALS": "/keys/sa.json"})
    assert tokens.token(STATUS) == _jwt(10_000)
    assert tokens.token(STATUS) == _jwt(10_000)  # cached: not fetched twice
    assert sources.calls == [("google-auth", STATUS)]
    tokens.token(CONTROL)
    assert sources.calls[-1] == ("google-auth", CONTROL)


def test_a_token_is_fetched_again_a_minute_before_it_expires() -> None:
    sources = Sources(fetch=_jwt(1_000))
    env = {"GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}
    tokens = sources.tokens(env, now=900)
    tokens.token(STATUS)
    tokens.token(STATUS)
    assert len(sources.calls) == 1
    tokens._clock = lambda: 950
    tokens.token(STATUS)
    assert len(sources.calls) == 2


def test_a_user_account_uses_gcloud_before_the_slow_metadata_probe() -> None:
    sources = Sources(fetch="metadata", gcloud="user-token")
    tokens = sources.tokens({})
    assert tokens.token(STATUS) == "user-token"
    assert sources.calls == [("gcloud", "")] and tokens.source.startswith("gcloud")


def test_without_gcloud_the_metadata_server_is_tried() -> None:
    sources = Sources(fetch="vm-token")
    assert sources.tokens({}, has_gcloud=False).token(STATUS) == "vm-token"
    assert sources.calls == [("google-auth", STATUS)]


def test_no_credentials_anywhere_says_what_to_run() -> None:
    with pytest.raises(NoCredentials) as raised:
        Sources().tokens({}).token(STATUS)
    message = str(raised.value)
    assert "gcloud auth login" in message and "GOOGLE_APPLICATION_CREDENTIALS" in message
    assert "no active account" in message


def test_a_bad_key_file_names_the_variable_and_does_not_fall_back() -> None:
    sources = Sources(gcloud="user-token")
    with pytest.raises(NoCredentials, match=r"GOOGLE_APPLICATION_CREDENTIALS=/k.json"):
        sources.tokens({"GOOGLE_APPLICATION_CREDENTIALS": "/k.json"}).token(STATUS)
    assert [c[0] for c in sources.calls] == ["google-auth"]


def _fake_gcloud(folder: Path, stdout: str, stderr: str, code: int) -> str:
    """A `gcloud` executable that records its arguments and answers as told."""
    script = folder / "gcloud"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{folder}/calls"\n'
        f"printf '%s' '{stdout}'\n"
        f"printf '%s\\n' '{stderr}' >&2\n"
        f"exit {code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_gcloud_is_asked_for_the_active_accounts_identity_token(tmp_path: Path) -> None:
    gcloud = _fake_gcloud(tmp_path, "eyJ.user.token\n", "", 0)
    assert print_identity_token(executable=gcloud) == "eyJ.user.token"
    assert (tmp_path / "calls").read_text().split() == ["auth", "print-identity-token", "--quiet"]


def test_gcloud_impersonates_a_service_account_for_the_apis_url(tmp_path: Path) -> None:
    gcloud = _fake_gcloud(tmp_path, "eyJ.sa.token", "", 0)
    assert print_identity_token(STATUS, "ops@p.iam.gserviceaccount.com", executable=gcloud)
    assert (tmp_path / "calls").read_text().split()[3:] == [
        "--impersonate-service-account=ops@p.iam.gserviceaccount.com",
        f"--audiences={STATUS}",
        "--include-email",
    ]


def test_the_impersonation_setting_reaches_gcloud_per_audience() -> None:
    sources = Sources(gcloud="sa-token")
    tokens = sources.tokens(
        {"HEKATON_IMPERSONATE_SERVICE_ACCOUNT": "ops@p.iam.gserviceaccount.com"}
    )
    tokens.token(STATUS)
    tokens.token(CONTROL)
    assert sources.calls == [
        ("gcloud", f"{STATUS} as ops@p.iam.gserviceaccount.com"),
        ("gcloud", f"{CONTROL} as ops@p.iam.gserviceaccount.com"),
    ]


def test_gcloud_without_an_account_reports_its_own_error_line(tmp_path: Path) -> None:
    error = "ERROR: (gcloud.auth.print-identity-token) You do not currently have an active account"
    gcloud = _fake_gcloud(tmp_path, "", error, 1)
    with pytest.raises(NoCredentials, match=r"You do not currently have an active account"):
        print_identity_token(executable=gcloud)


def test_the_gcloud_user_audience_is_googles_sdk_client() -> None:
    # deploy.sh lists this among HEKATON_AUTH_AUDIENCES; a typo would refuse every user.
    assert GCLOUD_AUDIENCE == "32555940559.apps.googleusercontent.com"
    assert GCLOUD_AUDIENCE in (Path(__file__).parents[2] / "deploy.sh").read_text()


# --- what a refusal says ----------------------------------------------------------------------------


def _gcp(token: str = "tok-SECRET") -> Target:
    return Target(
        project="my-proj-1",
        status_url=STATUS,
        control_url=CONTROL,
        google=GoogleTokens(env={"HEKATON_TOKEN": token}),
    )


def _answer(monkeypatch: pytest.MonkeyPatch, response: httpx.Response) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def fake_request(method: str, url: str, **kwargs: Any) -> httpx.Response:
        sent.append({"method": method, "url": url, **kwargs})
        return response

    monkeypatch.setattr(api_client.httpx, "request", fake_request)
    return sent


def test_the_token_goes_in_the_authorization_header_for_the_apis_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = _answer(monkeypatch, httpx.Response(200, json={"ok": True}))
    assert api_client.fetch(_gcp(), "/services") == {"ok": True}
    assert sent[0]["url"] == STATUS + "/services"
    assert sent[0]["headers"]["Authorization"] == "Bearer tok-SECRET"


def test_a_403_from_cloud_run_names_the_invoker_role_and_the_service(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    html = "<html><title>403 Forbidden</title>Your client does not have permission</html>"
    _answer(monkeypatch, httpx.Response(403, text=html))
    with pytest.raises(Refusal) as raised:
        api_client.fetch(_gcp(), "/services/iris")
    message = str(raised.value)
    assert "roles/run.invoker" in message and "hekaton-status" in message
    assert "tok-SECRET" not in message


def test_a_403_from_hekaton_names_the_allowed_principals(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, httpx.Response(403, json={"error": "bob@x.com is not allowed"}))
    with pytest.raises(Refusal, match=r"bob@x.com is not allowed.*--allowed-principals"):
        api_client.control(_gcp(), "POST", "/services/iris/rollback", {})


def test_a_401_from_hekaton_names_the_accepted_audiences(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, httpx.Response(401, json={"error": "token refused: Invalid audience"}))
    with pytest.raises(Refusal) as raised:
        api_client.fetch(_gcp(), "/services")
    assert "HEKATON_AUTH_AUDIENCES" in str(raised.value) and STATUS in str(raised.value)
    assert "tok-SECRET" not in str(raised.value)


def test_an_unreachable_url_says_which_and_what_to_check(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_args: Any, **_kwargs: Any) -> httpx.Response:
        raise httpx.ConnectError("Name or service not known")

    monkeypatch.setattr(api_client.httpx, "request", refuse)
    with pytest.raises(CommandError, match=rf"read API at {STATUS} unreachable.*--status-url"):
        api_client.fetch(_gcp(), "/services")


def test_missing_credentials_stop_the_call_before_anything_is_sent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent = _answer(monkeypatch, httpx.Response(200, json={}))
    nothing = Target(
        project="my-proj-1",
        status_url=STATUS,
        control_url=CONTROL,
        google=Sources().tokens({}, has_gcloud=False),
    )
    with pytest.raises(CommandError, match=r"cannot call the control API .*gcloud auth login"):
        api_client.control(nothing, "POST", "/services/iris/rollback", {})
    assert sent == []


def test_publishing_without_google_credentials_says_what_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real Pub/Sub client, with nowhere to find credentials (and a metadata server that refuses).
    for variable in ("PUBSUB_EMULATOR_HOST", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    from cli.rollout_commands import publish

    with pytest.raises(CommandError) as raised:
        publish(_gcp(), "gcr", {"action": "INSERT"})
    assert "topic gcr of project my-proj-1" in str(raised.value)
    assert "gcloud auth application-default login" in str(raised.value)


def test_a_push_to_gcp_needs_the_real_digest(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["--project", "my-proj-1", "--region", "europe-west1", "push", "r.example/m:v2"]
    assert main(argv) == 2
    assert "give the image's digest (r.example/m:v2@sha256:...)" in capsys.readouterr().err


@pytest.mark.parametrize("command", [["up", "--detach"], ["token"], ["env"]])
def test_a_local_only_command_refuses_deployment_flags(
    command: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--project", "my-proj-1", *command]) == 2
    assert f"`hekaton {command[0]}` works on the local stack only" in capsys.readouterr().err


def test_a_503_is_an_outage_not_a_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    """hekaton could not answer (a dependency down): exit 2 with what failed, never "refused"."""
    error = "Firestore read got no answer within 5.0s from project p: check it; try again"
    _answer(monkeypatch, httpx.Response(503, json={"error": error}))
    with pytest.raises(api_client.Unavailable) as raised:
        api_client.fetch(_gcp(), "/services/iris")
    assert not isinstance(raised.value, Refusal)
    assert str(raised.value) == f"the read API at {STATUS} could not answer (503): {error}"


def test_a_500_is_a_fault_reported_at_once_not_an_outage(monkeypatch: pytest.MonkeyPatch) -> None:
    _answer(monkeypatch, httpx.Response(500, text="<html>Internal Server Error</html>"))
    with pytest.raises(CommandError) as raised:
        api_client.fetch(_gcp(), "/services/iris")
    assert not isinstance(raised.value, Refusal | api_client.Unavailable)
    assert "failed (500): HTTP 500: <html>Internal Server Error</html>" in str(raised.value)
    assert "not an outage" in str(raised.value)
