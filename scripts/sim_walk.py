#!/usr/bin/env python3
"""Walk every export and list endpoint of a zendesk-sim to its end and compare with /__sim/truth.

Usage: python3 scripts/sim_walk.py --base-url URL --email E --token T [--verbose]

Exit 0 when the ids collected for every covered stream equal the truth (and, for tickets, users and
organizations, the latest replication-key values match); exit 1 with a per-stream diff otherwise.
Handles 429 (waits Retry-After, or 2 s when the header is missing), 5xx and broken bodies (retries).
Standard library only.
"""
import argparse
import base64
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

LISTS = [
    # (path, json key, truth stream, pagination)
    ("/api/v2/groups.json", "groups", "groups", "cursor"),
    ("/api/v2/group_memberships.json", "group_memberships", "group_memberships", "cursor"),
    ("/api/v2/organization_memberships.json", "organization_memberships", "organization_memberships", "cursor"),
    ("/api/v2/macros.json", "macros", "macros", "cursor"),
    ("/api/v2/ticket_fields.json", "ticket_fields", "ticket_fields", "cursor"),
    ("/api/v2/ticket_forms.json", "ticket_forms", "ticket_forms", "offset"),
    ("/api/v2/user_fields.json", "user_fields", "user_fields", "cursor"),
    ("/api/v2/organization_fields.json", "organization_fields", "organization_fields", "cursor"),
    ("/api/v2/brands.json", "brands", "brands", "cursor"),
    ("/api/v2/custom_roles.json", "custom_roles", "custom_roles", "offset"),
    ("/api/v2/business_hours/schedules.json", "schedules", "schedules", "offset"),
    ("/api/v2/automations.json", "automations", "automations", "cursor"),
    ("/api/v2/triggers.json", "triggers", "triggers", "cursor"),
    ("/api/v2/views.json", "views", "views", "cursor"),
    ("/api/v2/slas/policies.json", "sla_policies", "sla_policies", "none"),
    ("/api/v2/channels/voice/phone_numbers.json", "phone_numbers", "talk_phone_numbers", "offset"),
    ("/api/v2/satisfaction_ratings.json", "satisfaction_ratings", "satisfaction_ratings", "cursor"),
    ("/api/v2/deleted_tickets.json", "deleted_tickets", "deleted_tickets", "cursor"),
    ("/api/v2/deleted_users.json", "deleted_users", "deleted_users", "cursor"),
]


class Client:
    def __init__(self, base, email, token, verbose):
        self.base = base.rstrip("/")
        cred = base64.b64encode(f"{email}/token:{token}".encode()).decode()
        self.auth = f"Basic {cred}"
        self.verbose = verbose
        self.requests = 0

    def get(self, url, auth=True):
        if not url.startswith("http"):
            url = self.base + url
        for attempt in range(60):
            req = urllib.request.Request(url)
            if auth:
                req.add_header("Authorization", self.auth)
            try:
                self.requests += 1
                with urllib.request.urlopen(req, timeout=60) as resp:
                    body = resp.read()
                return json.loads(body)
            except urllib.error.HTTPError as e:
                if e.code == 429:
                    wait = e.headers.get("Retry-After")
                    wait = float(wait) if wait else 2.0
                    if self.verbose:
                        print(f"429 on {url}: waiting {wait}s", file=sys.stderr)
                    time.sleep(wait)
                    continue
                if e.code >= 500:
                    time.sleep(min(0.2 * (attempt + 1), 2.0))
                    continue
                raise RuntimeError(f"GET {url} -> {e.code}: {e.read()[:300]!r}")
            except (ValueError, urllib.error.URLError, ConnectionError, OSError) as e:
                # Truncated / malformed bodies and dropped connections: retry.
                if self.verbose:
                    print(f"retry {url}: {e}", file=sys.stderr)
                time.sleep(0.2)
                continue
        raise RuntimeError(f"GET {url}: too many retries")


def cursor_export(c, path, key, include=None):
    """Walks a cursor-based export; returns records (later versions win) and side-loads."""
    q = {"start_time": "1"}
    if include:
        q["include"] = include
    url = f"{path}?{urllib.parse.urlencode(q)}"
    records, side = {}, []
    while True:
        page = c.get(url)
        for r in page[key]:
            records[r["id"]] = r
        if include == "identities":
            side.extend(page.get("identities", []))
        if page["end_of_stream"]:
            return records, side
        url = page["after_url"]


def time_export(c, path, key, include=None, ts_of=None):
    """Walks a time-based export, removing the duplicates it produces at page boundaries."""
    q = {"start_time": "1"}
    if include:
        q["include"] = include
    url = f"{path}?{urllib.parse.urlencode(q)}"
    records = {}
    while True:
        page = c.get(url)
        for r in page[key]:
            records[r["id"]] = r
        if page["end_of_stream"]:
            return records
        url = page["next_page"]


def list_walk(c, path, key, style):
    out = []
    if style == "none":
        return c.get(path)[key]
    if style == "cursor":
        url = f"{path}?page%5Bsize%5D=100"
        while True:
            page = c.get(url)
            out.extend(page[key])
            if not page["meta"]["has_more"]:
                return out
            url = page["links"]["next"]
    url = f"{path}?per_page=100"
    while url:
        page = c.get(url)
        out.extend(page[key])
        url = page["next_page"]
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--email", required=True)
    ap.add_argument("--token", required=True)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    c = Client(args.base_url, args.email, args.token, args.verbose)
    started = time.time()
    got = {}  # stream -> {id: updated value or None}

    tickets, _ = cursor_export(c, "/api/v2/incremental/tickets/cursor.json", "tickets", "metric_sets")
    got["tickets"] = {i: t["generated_timestamp"] for i, t in tickets.items()}
    deleted = {i for i, t in tickets.items() if t["status"] == "deleted"}
    got["ticket_metrics"] = {
        t["metric_set"]["id"]: t["metric_set"]["updated_at"] for i, t in tickets.items() if i not in deleted and t.get("metric_set")
    }

    users, identities = cursor_export(c, "/api/v2/incremental/users/cursor.json", "users", "identities")
    got["users"] = {i: u["updated_at"] for i, u in users.items()}
    got["user_identities"] = {x["id"]: x["updated_at"] for x in identities}

    orgs = time_export(c, "/api/v2/incremental/organizations.json", "organizations")
    got["organizations"] = {i: o["updated_at"] for i, o in orgs.items()}
    mev = time_export(c, "/api/v2/incremental/ticket_metric_events.json", "ticket_metric_events")
    got["ticket_metric_events"] = {i: e["time"] for i, e in mev.items()}
    events = time_export(c, "/api/v2/incremental/ticket_events.json", "ticket_events", "comment_events")
    comments = {}
    for ev in events.values():
        if ev["ticket_id"] in deleted:
            continue
        for ch in ev["child_events"]:
            if ch.get("event_type") == "Comment":
                comments[ch["id"]] = ev["created_at"]
    got["ticket_comments"] = comments

    # Audits: the account-wide list (no archived tickets) plus per-ticket audits for archived ones.
    listed = {t["id"] for t in list_walk(c, "/api/v2/tickets.json", "tickets", "cursor")}
    archived = [i for i in tickets if i not in listed and i not in deleted]
    audits = {}
    url = "/api/v2/ticket_audits.json?limit=1000"
    while url:
        page = c.get(url)
        for a in page["audits"]:
            audits[a["id"]] = a["created_at"]
        url = page["before_url"]
    for tid in archived:
        url = f"/api/v2/tickets/{tid}/audits.json?page%5Bsize%5D=100"
        while True:
            page = c.get(url)
            for a in page["audits"]:
                audits[a["id"]] = a["created_at"]
            if not page["meta"]["has_more"]:
                break
            url = page["links"]["next"]
    got["ticket_audits"] = audits

    for path, key, stream, style in LISTS:
        got[stream] = {r["id"]: None for r in list_walk(c, path, key, style)}
    got["tags"] = {t["name"]: None for t in list_walk(c, "/api/v2/tags.json", "tags", "cursor")}

    truth = c.get("/__sim/truth", auth=False)
    failures = []
    for stream, records in sorted(got.items()):
        t = truth[stream]
        want = set(t["ids"])
        have = set(records)
        if want != have:
            missing = sorted(want - have, key=str)[:10]
            extra = sorted(have - want, key=str)[:10]
            failures.append(f"{stream}: truth {len(want)} ids, walk {len(have)}; missing {missing} extra {extra}")
            continue
        if stream in ("tickets", "users", "organizations"):
            bad = [i for i, v in records.items() if t["updated"][str(i)] != v][:10]
            if bad:
                failures.append(f"{stream}: stale versions for ids {bad}")
        print(f"ok {stream}: {len(have)} records")
    elapsed = time.time() - started
    print(f"{len(got)} streams walked with {c.requests} requests in {elapsed:.1f}s")
    if failures:
        print("MISMATCH:", file=sys.stderr)
        for f in failures:
            print("  " + f, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
