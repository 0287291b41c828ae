#!/usr/bin/env python3
"""Seeds one example tenant with synthetic clinical data through its data plane's FHIR API.

Used by e2e/quickstart after the tenants and their IdPs are Ready: a few patients (made-up
names, no real PHI), each with encounters over the last weeks in two departments, SOAP
notes for the finished ones and a medication request. Everything goes through the real
API with a real token of the tenant's IdP (so it is validated, stored under RLS and
audited like any clinician's writes).

Idempotent: a tenant that already holds the first seeded patient (by identifier) is left
as it is. That search may be answered by the Region's reader (a replica, behind the
primary by up to a second in the stack): run it again only after the first run replayed
there (the e2e seed test waits for the replica). Standard library only.

    seed.py --url http://127.0.0.1:PORT --host mercy-general.us.phoenixguardian.test \
            --tenant mercy-general --token "$ACCESS_TOKEN"
"""

import argparse
import base64
import datetime as dt
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

SEED_SYSTEM = "urn:phoenixguardian:seed"
FAMILIES = ["Rivera", "Okafor", "Lindqvist", "Nakamura", "Haddad"]
GIVEN = ["Sam", "Jordan", "Alex", "Robin", "Kim"]
DEPARTMENTS = ["cardiology", "emergency"]
PRACTITIONERS = ["dr-ames", "dr-boateng"]


class Api:
    def __init__(self, url, host, token):
        self.url, self.host, self.token = url.rstrip("/"), host, token

    def call(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Host", self.host)
        request.add_header("Authorization", "Bearer " + self.token)
        request.add_header("Accept", "application/fhir+json")
        if data is not None:
            request.add_header("Content-Type", "application/fhir+json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            sys.exit(f"seed: {method} {path} answered {error.code}: {text[:500]}")

    def create(self, resource):
        status, created = self.call("POST", "/fhir/" + resource["resourceType"], resource)
        if status != 201:
            sys.exit(f"seed: creating a {resource['resourceType']} answered {status}")
        return created["id"]


def mrn(tenant, i):
    return f"{tenant}-seed-{i:03d}"


def note_content(text_by_section):
    return [
        {
            "attachment": {
                "contentType": "text/plain; charset=utf-8",
                "title": title,
                "data": base64.b64encode(text.encode()).decode(),
                "size": len(text.encode()),
            }
        }
        for title, text in text_by_section
    ]


def iso(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def seed(api, tenant, patients, today):
    query = urllib.parse.urlencode({"identifier": f"{SEED_SYSTEM}|{mrn(tenant, 0)}"})
    _, bundle = api.call("GET", "/fhir/Patient?" + query)
    if bundle.get("entry"):
        print(f"{tenant}: already seeded")
        return
    counts = {"Patient": 0, "Encounter": 0, "DocumentReference": 0, "MedicationRequest": 0}
    for i in range(patients):
        patient = api.create({
            "resourceType": "Patient",
            "identifier": [{"system": SEED_SYSTEM, "value": mrn(tenant, i)}],
            "name": [{"family": FAMILIES[i % len(FAMILIES)], "given": [GIVEN[i % len(GIVEN)]]}],
            "gender": ["female", "male", "other"][i % 3],
            "birthDate": f"{1950 + 7 * i}-0{1 + i % 9}-1{i % 9}",
        })
        counts["Patient"] += 1
        for j in range(3):
            start = today - dt.timedelta(days=3 + 5 * j + i, hours=-9 - j)
            finished = j > 0
            period = {"start": iso(start)}
            if finished:
                period["end"] = iso(start + dt.timedelta(minutes=20 + 10 * (i + j)))
            encounter = api.create({
                "resourceType": "Encounter",
                "status": "finished" if finished else "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                          "code": "AMB"},
                "serviceType": {"coding": [{"code": DEPARTMENTS[(i + j) % 2]}]},
                "subject": {"reference": f"Patient/{patient}"},
                "participant": [{"individual": {
                    "reference": f"Practitioner/{PRACTITIONERS[(i * j) % 2]}"}}],
                "period": period,
            })
            counts["Encounter"] += 1
            if finished:
                api.create({
                    "resourceType": "DocumentReference",
                    "status": "current",
                    "docStatus": "final",
                    "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3"}]},
                    "subject": {"reference": f"Patient/{patient}"},
                    "context": {"encounter": [{"reference": f"Encounter/{encounter}"}]},
                    "date": period["end"],
                    "content": note_content([
                        ("Subjective", "Synthetic patient: follow-up visit, feels well."),
                        ("Objective", "BP 124/80, HR 72, afebrile."),
                        ("Assessment", "Stable."),
                        ("Plan", "Continue current treatment, review in 3 months."),
                    ]),
                })
                counts["DocumentReference"] += 1
            if j == 1:
                api.create({
                    "resourceType": "MedicationRequest",
                    "status": "active",
                    "intent": "order",
                    "medicationCodeableConcept": {"coding": [{
                        "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                        "code": "308182", "display": "Amoxicillin 500 MG Oral Capsule"}]},
                    "subject": {"reference": f"Patient/{patient}"},
                    "encounter": {"reference": f"Encounter/{encounter}"},
                    "authoredOn": period["start"],
                })
                counts["MedicationRequest"] += 1
    print(f"{tenant}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="the data plane's base URL")
    parser.add_argument("--host", required=True, help="the tenant's host name")
    parser.add_argument("--tenant", required=True, help="the tenant's name")
    parser.add_argument("--token", required=True, help="a bearer token of a clinician")
    parser.add_argument("--patients", type=int, default=5)
    args = parser.parse_args()
    today = dt.datetime.now(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    seed(Api(args.url, args.host, args.token), args.tenant, args.patients, today)


if __name__ == "__main__":
    main()
