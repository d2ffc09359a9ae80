"""Drive a small joint evaluation through HTTP, registration to public verification.

Run by deploy/smoke.sh against gunicorn + two Celery workers + beat; standard library
only (urllib, http.cookiejar), so it tests the deployment and not the test client:
every step is a real request with a session cookie and a CSRF token, as a browser or
an integration script would make it.

    python deploy/smoke.py --base-url http://127.0.0.1:8123 --users users.json

`users.json` maps usernames to primary keys (staff assignment takes a user id); the
password of every demo account comes from SMOKE_PASSWORD. Exits 1 naming the failed
step, with the response status and body.
"""

import argparse
import http.cookiejar
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import date, datetime
from zoneinfo import ZoneInfo

CANDIDATES = 3
PLAN = {
    "qualification_type": "MEM-ELEC-LV",  # 低压电工作业: qualification and skill level 5
    "occupation": "6-31-01-03",
    "level": 5,
    "province": "14",
}
# Rare name characters the certificate fonts must render (issue 5 item 2).
NAMES = ["王垚", "李珺璟", "欧阳骉"]
# Theory and practical marks: all at least 80, so each case earns both certificates.
SCORES = [(88, 90), (92, 86), (85, 95)]
POLL_SECONDS = 120
# settings.TIME_ZONE: the check-in desk admits on the session's date in this zone.
TIME_ZONE = ZoneInfo("Asia/Shanghai")
STARTED = time.monotonic()


class SmokeFailure(Exception):
    pass


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", flush=True)


class Step:
    """`with Step("name"):` prints the step with its duration; a failure names it."""

    def __init__(self, name: str):
        self.name = name

    def __enter__(self):
        self.started = time.monotonic()
        return self

    def __exit__(self, kind, exc, tb):
        took = time.monotonic() - self.started
        if exc is None:
            log(f"ok   {self.name} ({took:.2f}s)")
            return False
        log(f"FAIL {self.name} ({took:.2f}s)")
        if isinstance(exc, SmokeFailure):
            print(f"smoke: {self.name}: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        return False


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # a 302 is an answer to check, not to follow


class Response:
    def __init__(self, status: int, headers, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            raise SmokeFailure(f"not JSON (HTTP {self.status}): {self.text()[:300]}") from None

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Client:
    """One browser: its own cookie jar (session, CSRF token)."""

    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), _NoRedirect
        )

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    def request(self, method: str, path: str, *, data=None, form=None, headers=None):
        url = path if path.startswith("http") else self.base_url + path
        body = None
        all_headers = {"Accept": "application/json", **(headers or {})}
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            all_headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif data is not None:
            body = json.dumps(data).encode()
            all_headers["Content-Type"] = "application/json"
        if method not in {"GET", "HEAD"}:
            token = self.cookie("csrftoken")
            if token:
                all_headers["X-CSRFToken"] = token
        # http(s) only: main() checks the base URL's scheme.
        request = urllib.request.Request(url, data=body, headers=all_headers, method=method)  # noqa: S310
        try:
            with self.opener.open(request, timeout=60) as answer:
                return Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as answer:
            return Response(answer.code, answer.headers, answer.read())
        except (urllib.error.URLError, OSError) as exc:
            raise SmokeFailure(f"{method} {url}: {exc}") from None

    def call(self, method: str, path: str, data=None, expect=(200, 201)):
        """A JSON API call that must answer one of `expect`; returns the parsed body."""
        response = self.request(method, path, data=data)
        if response.status not in expect:
            raise SmokeFailure(
                f"{method} {path} answered {response.status}, expected {expect}: "
                f"{response.text()[:500]}"
            )
        return response.json() if response.body else None

    def login(self, username: str, password: str) -> None:
        page = self.request("GET", "/accounts/login/", headers={"Accept": "text/html"})
        if page.status != 200 or not self.cookie("csrftoken"):
            raise SmokeFailure(f"login page answered {page.status} without a CSRF cookie")
        answer = self.request(
            "POST",
            "/accounts/login/",
            form={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.cookie("csrftoken"),
            },
            headers={"Accept": "text/html", "Referer": self.base_url + "/accounts/login/"},
        )
        location = answer.headers.get("Location", "")
        if answer.status != 302 or "/accounts/login/" in location:
            raise SmokeFailure(f"{username} could not log in (HTTP {answer.status})")


def results(page) -> list:
    return page["results"] if isinstance(page, dict) and "results" in page else page


def id_number(serial: int, birth: date = date(1990, 5, 17)) -> str:
    """A valid resident ID number (GB 11643 check digit), male, 大同城区 (140202)."""
    first17 = f"140202{birth:%Y%m%d}{serial * 2 + 1:03d}"
    weights = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
    total = sum(int(digit) * weight for digit, weight in zip(first17, weights, strict=True))
    return first17 + "10X98765432"[total % 11]


def poll(what: str, probe, seconds: int = POLL_SECONDS):
    """Call `probe` until it returns something truthy; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SmokeFailure(f"gave up after {seconds}s waiting for {what}")
        time.sleep(0.5)


def run(base_url: str, users: dict[str, int], password: str) -> None:
    today = datetime.now(TIME_ZONE).date().isoformat()
    clients = {}
    with Step("health check /healthz"):
        answer = Client(base_url).request("GET", "/healthz")
        if (answer.status, answer.text()) != (200, "ok"):
            raise SmokeFailure(f"/healthz answered {answer.status}: {answer.text()[:200]}")

    with Step("log in: coordinator, grader, reviewer, two issuers' officers"):
        for name in ("coordinator", "grader", "reviewer", "officer", "officer-skill"):
            clients[name] = Client(base_url)
            clients[name].login(name, password)
    coord, grader, reviewer = clients["coordinator"], clients["grader"], clients["reviewer"]

    with Step("create and open the plan"):
        plan = coord.call(
            "POST",
            "/api/v1/plans/",
            {
                **PLAN,
                "name": f"冒烟测试 低压电工作业 {time.strftime('%H%M%S')}",
                "exam_date": today,
                "require_photo": False,
            },
            expect=(201,),
        )
        plan = coord.call("POST", f"/api/v1/plans/{plan['id']}/open/")
        if plan["status"] != "open":
            raise SmokeFailure(f"plan is {plan['status']} after open")

    cases = []
    with Step(f"register {CANDIDATES} candidates, create, submit and approve their cases"):
        for n in range(CANDIDATES):
            candidate = coord.call(
                "POST",
                "/api/v1/candidates/",
                {
                    "id_number": id_number(n + 1),
                    "name": NAMES[n],
                    "phone": f"1380013800{n}",
                    "education": "senior",
                    "work_years": {PLAN["occupation"]: "3"},
                },
                expect=(201,),
            )
            case = coord.call(
                "POST",
                "/api/v1/cases/",
                {"candidate": candidate["id"], "plan": plan["id"]},
                expect=(201,),
            )
            coord.call("POST", f"/api/v1/cases/{case['id']}/submit/")
            case = coord.call("POST", f"/api/v1/cases/{case['id']}/approve/")
            if case["status"] != "eligible":
                raise SmokeFailure(f"case {case['id']} is {case['status']} after approval")
            cases.append(case)

    with Step("venue, room and a session dated today; open it and assign the grader"):
        venue = coord.call("POST", "/api/v1/venues/", {"name": "冒烟测试考点"}, expect=(201,))
        room = coord.call(
            "POST",
            "/api/v1/rooms/",
            {"venue": venue["id"], "name": "第1考场", "capacity": CANDIDATES},
            expect=(201,),
        )
        # Check-in is accepted on the session's date only: today, all day long.
        session = coord.call(
            "POST",
            "/api/v1/sessions/",
            {
                "plan": plan["id"],
                "room": room["id"],
                "date": today,
                "start_time": "00:00",
                "end_time": "23:59",
                "capacity": CANDIDATES,
                "components": ["theory", "practical"],
            },
            expect=(201,),
        )
        sid = session["id"]
        coord.call("POST", f"/api/v1/sessions/{sid}/open/")
        for component in ("theory", "practical"):
            coord.call(
                "POST",
                f"/api/v1/sessions/{sid}/assign_staff/",
                {"user": users["grader"], "role": "grader", "component": component},
                expect=(201,),
            )

    with Step("allocate seats and freeze the roster"):
        allocation = coord.call("POST", f"/api/v1/sessions/{sid}/allocate/")
        if len(allocation["allocated"]) != CANDIDATES or allocation["unallocated"]:
            raise SmokeFailure(f"allocation: {allocation}")
        bookings = {
            b["case"]: b
            for b in results(coord.call("GET", f"/api/v1/bookings/?session={sid}&page_size=100"))
        }
        coord.call("POST", f"/api/v1/sessions/{sid}/freeze_roster/")

    with Step("start, check in every candidate, record training, close"):
        coord.call("POST", f"/api/v1/sessions/{sid}/start/")
        for case in cases:
            booking = coord.call(
                "POST",
                f"/api/v1/sessions/{sid}/check_in/",
                {"code": bookings[case["id"]]["ticket_number"]},
            )
            if booking["status"] != "checked_in":
                raise SmokeFailure(f"booking {booking['id']} is {booking['status']}")
            coord.call(
                "POST", f"/api/v1/results/{case['id']}/training-complete/", {}, expect=(201,)
            )
        coord.call("POST", f"/api/v1/sessions/{sid}/close/")

    with Step("the grader enters theory and practical marks"):
        for index, component in enumerate(("theory", "practical")):
            marks = [
                {
                    "ticket_number": bookings[case["id"]]["ticket_number"],
                    "score": str(SCORES[n][index]),
                    "slot": "single",
                }
                for n, case in enumerate(cases)
            ]
            grader.call(
                "POST",
                "/api/v1/marking/marks/",
                {"session": sid, "component": component, "marks": marks},
                expect=(201,),
            )

    with Step("finalise results and submit the session for review"):
        finalised = coord.call("POST", "/api/v1/results/finalise/", {"session": sid})
        if finalised["pending"]:
            raise SmokeFailure(f"results still pending: {finalised['pending']}")
        coord.call("POST", f"/api/v1/review/sessions/{sid}/submit_for_review/")

    with Step("the reviewer handles the warnings (sent by a worker) and approves"):

        def sent_warnings():
            rows = results(reviewer.call("GET", f"/api/v1/review/sessions/{sid}/warnings/"))
            # A one-element tuple: truthy even when the session raised no warning.
            return None if any(w["status"] == "generated" for w in rows) else (rows,)

        (warnings,) = poll("the workers to send the early warnings", sent_warnings)
        for warning in warnings:
            reviewer.call(
                "POST",
                f"/api/v1/review/warnings/{warning['id']}/review/",
                {"confirmed": False, "note": "冒烟测试：已核查签到记录"},
            )
            reviewer.call("POST", f"/api/v1/review/warnings/{warning['id']}/close/")
        reviewer.call(
            "POST", f"/api/v1/review/sessions/{sid}/approve/", {"notes": "冒烟测试，同意发布"}
        )
        log(f"     {len(warnings)} warning(s) reviewed and closed")

    issued = {}
    for officer in ("officer", "officer-skill"):
        api = clients[officer]
        with Step(f"{officer}: certificates opened, batch-approve and batch-issue"):

            def pending(api=api):
                rows = results(api.call("GET", "/api/v1/certificates/?status=pending"))
                return rows if len(rows) >= CANDIDATES else None

            ids = [row["id"] for row in poll("the certificates to be opened", pending)]
            api.call("POST", "/api/v1/certificates/batch-approve/", {"ids": ids})
            batch = api.call("POST", "/api/v1/certificates/batch-issue/", {"ids": ids})
            if batch["count"] != CANDIDATES or any(
                row["status"] != "issued" for row in batch["results"]
            ):
                raise SmokeFailure(f"batch issue: {batch}")
            issued[officer] = batch["results"]

    with Step("the workers render and sign every PDF"):
        for officer, rows in issued.items():
            for row in rows:

                def rendered(api=clients[officer], pk=row["id"]):
                    return api.call("GET", f"/api/v1/certificates/{pk}/")["pdf_available"]

                poll(f"the PDF of certificate {row['id']}", rendered)

    with Step("download a signed PDF"):
        row = issued["officer-skill"][0]
        pdf = clients["officer-skill"].request(
            "GET", f"/api/v1/certificates/{row['id']}/pdf/", headers={"Accept": "application/pdf"}
        )
        if pdf.status != 200 or not pdf.body.startswith(b"%PDF"):
            raise SmokeFailure(f"PDF download answered {pdf.status}: {pdf.body[:80]!r}")
        if pdf.headers.get("Content-Type") != "application/pdf":
            raise SmokeFailure(f"PDF Content-Type {pdf.headers.get('Content-Type')}")
        log(f"     certificate {row['id']}: {len(pdf.body)} bytes")

    with Step("public verification: API by code and the QR landing page"):
        public = Client(base_url)
        for rows in issued.values():
            for row in rows:
                url = row["verification_url"]
                if not url or not url.startswith(base_url + "/verify/"):
                    raise SmokeFailure(f"verification_url {url!r} is not under {base_url}")
                code = url.rstrip("/").rsplit("/", 1)[1]
                answer = public.call(
                    "GET", "/api/v1/verify/?" + urllib.parse.urlencode({"code": code})
                )
                if answer["status"] != "valid" or answer["status_label"] != "有效":
                    raise SmokeFailure(f"verify {code}: {answer}")
        page = public.request(
            "GET", urllib.parse.urlsplit(url).path, headers={"Accept": "text/html"}
        )
        if page.status != 200 or "有效" not in page.text():
            raise SmokeFailure(f"verification page answered {page.status} without 有效")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--users", required=True, help="JSON file: username -> user id")
    args = parser.parse_args()
    if urllib.parse.urlsplit(args.base_url).scheme not in {"http", "https"}:
        parser.error("--base-url must be an http(s) URL")
    with open(args.users, encoding="utf-8") as handle:
        users = json.load(handle)
    password = os.environ.get("SMOKE_PASSWORD", "demo-2026")
    run(args.base_url, users, password)
    log("smoke: every step passed")


if __name__ == "__main__":
    main()
