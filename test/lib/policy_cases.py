#!/usr/bin/env python3
"""
Generates the cases on which test/integration/policy_model.test.js compares pg_dialer's
calling-policy decision (dialer.compliance_verdict, dialer.next_opening) with the model of
test/lib/policy_model.py, and the model's answer for each.

    python3 test/lib/policy_cases.py --seed 21 --cases 10000 --window 08:00-21:00 > cases.json

Prints one JSON object: "world" (policies with their windows, blackout calendars,
campaigns, consents, refusals and attempts: the test writes them into the database),
"cases" (a call to a number at an instant; "expected": the model's verdict) and "coverage"
(how many cases of each kind, which the test checks).  The same seed gives the same cases.

What is generated, and why:
  - groups of 1 to 3 policies, each group scoped to a provider of its own so that groups do
    not meet; inside a group, scopes by country code, NANP area code and campaign, some
    policies disabled; windows from templates (every day, split windows, weekdays only, a
    Sunday-only window, windows touching midnight, windows inside the hours clocks skip or
    repeat at a DST change) or random ones, all on whole quarter hours (the model's search
    relies on it); blackout calendars; caps; silences after refusal; required consent;
  - numbers of every kind: one zone, several zones (Boise and Los Angeles, Puerto Rico and
    St John's, a bare NANP number in every zone of the plan), unknown (+800);
  - for each number a focus instant (near a DST change of its zone, or any day of
    2026-2027), its ledgers around it (attempts the provider accepted or refused, consents
    given and revoked, refusals) and cases around it: at random, exactly on a cap's or
    silence's or consent's bound, at local midnight (with a holiday on the local date that
    is not the UTC date), on a window's bounds, across the DST change;
  - the "cap" family: numbers whose attempts also include some in flight (no HTTP status
    yet), accepted without a provider call id, and refused with one; they count toward the
    cap unless the provider refused them (issue 21, item 1).  The other numbers' attempts
    are either accepted with an id or refused without one, on which every reading agrees.
"""

import argparse
import datetime as dt
import json
import random
import sys

from policy_model import DAY, Model, instant, interval, iso, read_number_zones, zone

START = instant('2026-01-05T00:00:00Z')
END = instant('2027-11-30T00:00:00Z')
HOUR = 3600

# zones a call or campaign may name; DST_ZONES change their clocks (both hemispheres, on the
# hour and on the half hour, at 00:00, 02:00 and 03:00 local)
ZONES = ['America/New_York', 'America/Los_Angeles', 'America/Chicago', 'America/Phoenix', 'America/St_Johns',
         'America/Santiago', 'America/Sao_Paulo', 'Europe/London', 'Europe/Paris', 'Europe/Helsinki',
         'Australia/Sydney', 'Australia/Lord_Howe', 'Pacific/Auckland', 'Pacific/Chatham', 'Pacific/Kiritimati',
         'Pacific/Pago_Pago', 'Asia/Kathmandu', 'Asia/Kolkata', 'Asia/Tokyo', 'UTC']
DST_ZONES = ['America/New_York', 'America/Los_Angeles', 'America/St_Johns', 'America/Santiago', 'Europe/London',
             'Europe/Paris', 'Australia/Sydney', 'Australia/Lord_Howe', 'Pacific/Auckland', 'Pacific/Chatham']
# number prefixes: each DST zone's, several zones, and some more
PREFIXES = {'America/New_York': '1212', 'America/Los_Angeles': '1213', 'America/St_Johns': '1709',
            'America/Santiago': '562', 'Europe/London': '4420', 'Europe/Paris': '3314', 'Australia/Sydney': '612',
            'Australia/Lord_Howe': '612', 'Pacific/Auckland': '649', 'Pacific/Chatham': '649'}
MULTI_PREFIXES = ['120830', '1709', '1907', '56', '3512', '64']
NANP_ANY = '1555'       # a bare NANP number: every zone of the plan (libphonenumber's prefix 1)
UNKNOWN = '800'         # international freephone: no zone

CAMPAIGNS = [
    {'name': 'model_c0', 'timezone': None, 'call_window_start': None, 'call_window_end': None},
    {'name': 'model_c1', 'timezone': 'Europe/Paris', 'call_window_start': None, 'call_window_end': None},
    {'name': 'model_c2', 'timezone': 'America/New_York', 'call_window_start': None, 'call_window_end': None},
    {'name': 'model_c3', 'timezone': 'Pacific/Auckland', 'call_window_start': '09:00', 'call_window_end': '17:00'},
    {'name': 'model_c4', 'timezone': None, 'call_window_start': '10:00', 'call_window_end': '19:30'},
    {'name': 'model_c5', 'timezone': 'Asia/Kolkata', 'call_window_start': '07:00', 'call_window_end': None},
    {'name': 'model_c6', 'timezone': None, 'call_window_start': '00:00', 'call_window_end': '24:00'},
]
PURPOSES = ['model_c1', 'model_c2', 'reminder', 'billing']
CALENDARS = ['model_cal0', 'model_cal1', 'model_cal2', 'model_cal3']
GENERAL_WINDOWS = [('08:00', '21:00'), ('00:00', '24:00'), ('09:00', '17:00'), ('07:30', '22:45')]
CAP_PERIODS = ['1 hour', '24 hours', '1 day', '7 days', '30 days']
SILENCES = ['12 hours', '1 day', '60 days']

ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]
WINDOW_TEMPLATES = {
    'us_tcpa': [(ALL_DAYS, '08:00', '21:00')],
    'us_fl': [(ALL_DAYS, '08:00', '20:00')],
    'fr_split': [([1, 2, 3, 4, 5], '10:00', '13:00'), ([1, 2, 3, 4, 5], '14:00', '20:00')],
    'office_split': [([1, 2, 3, 4, 5], '09:00', '12:00'), ([1, 2, 3, 4, 5], '14:00', '18:00')],
    'sunday_only': [([7], '12:00', '17:00')],
    'weekend': [([6, 7], '09:00', '12:00'), ([7], '14:00', '18:00')],
    'around_midnight': [(ALL_DAYS, '00:00', '02:00'), (ALL_DAYS, '22:00', '24:00')],
    'dst_hours': [(ALL_DAYS, '01:30', '03:00'), ([7], '00:00', '00:45')],
}

# attempts as (the call's status, the HTTP status of the request, whether it has a provider
# call id): SETTLED ones every reading of the cap counts alike (accepted with an id: counted;
# refused without one: not), UNSETTLED ones only the reading of issue 21, item 1 counts right
SETTLED = [('completed', 201, True), ('no_answer', 201, True), ('busy', 201, True), ('failed', 201, True),
           ('dialing', 201, True), ('failed', 400, False), ('failed', 503, False)]
UNSETTLED = [('dispatching', None, False),     # claimed, request in flight
             ('unknown', None, False),         # the answer was lost
             ('dialing', 200, False),          # accepted, no call id given
             ('failed', 500, True)]            # refused, though an id was recorded


def dst_changes(name):
    """The instants (to the minute) when a zone's offset from UTC changes in [START, END]."""
    z = zone(name)
    off = lambda t: dt.datetime.fromtimestamp(t, z).utcoffset()
    out = []
    t = START
    while t < END:
        if off(t) != off(t + 6 * HOUR):
            lo, hi = t, t + 6 * HOUR
            while hi - lo > 60:
                mid = (lo + hi) // 120 * 60
                lo, hi = (mid, hi) if off(mid) == off(lo) else (lo, mid)
            out.append(hi)
        t += 6 * HOUR
    return out


def local_instant(name, day, secs, fold):
    """The instant when zone name's clock shows day + secs (fold 1: the second of a repeated
    time; a skipped time is read with the offset before the change, as PostgreSQL does)."""
    local = dt.datetime.combine(day, dt.time()) + dt.timedelta(seconds=secs)
    return int(local.replace(tzinfo=zone(name), fold=fold).timestamp())


class Generator:
    def __init__(self, seed, settings, number_zones):
        self.rng = random.Random(seed)
        self.settings = settings
        self.number_zones = number_zones
        self.world = {'policies': [], 'blackout_dates': [], 'campaigns': CAMPAIGNS, 'consents': [],
                      'refusals': [], 'attempts': [], 'settings': settings}
        self.groups = []        # [provider, [policy]]
        self.cap_groups = []
        self.dst = {z: dst_changes(z) for z in DST_ZONES}
        self.calls = 0

    # ----------------------------------------------------------------- policies
    def windows(self, first):
        """A policy's windows; a group's other policies mostly have none or daytime ones, so
        that few groups never open."""
        r = self.rng
        if not first and r.random() < 0.85:
            name = r.choice(['none', 'none', 'none', 'us_tcpa', 'us_fl', 'fr_split', 'office_split'])
            spec = WINDOW_TEMPLATES.get(name, [])
        elif r.random() < 0.7:
            name = r.choice(list(WINDOW_TEMPLATES) + ['none', 'none'])
            spec = WINDOW_TEMPLATES.get(name, [])
        else:
            spec = []
            for _ in range(r.randint(1, 3)):
                days = sorted(r.sample(ALL_DAYS, r.randint(1, 7)))
                start = r.randrange(20, 80) * 900 if r.random() < 0.8 else r.randrange(0, 96) * 900
                end = min(start + r.randint(1, 40) * 900, DAY)
                spec.append((days, start, end))
        out = []
        for days, start, end in spec:
            fmt = lambda s: s if isinstance(s, str) else '%02d:%02d' % divmod(s // 60, 60)
            w = {'weekdays': days, 'starts': fmt(start), 'ends': fmt(end)}
            if not any(x['weekdays'] == w['weekdays'] and x['starts'] == w['starts'] for x in out):
                out.append(w)
        return out

    def policy(self, name, provider, cap=False, first=True):
        r = self.rng
        p = {'name': name, 'enabled': r.random() > 0.04, 'country_codes': [], 'area_codes': [], 'campaigns': [],
             'providers': [provider], 'blackout_calendars': [], 'max_calls': None, 'cap_period': None,
             'refusal_silence': None, 'require_consent': False, 'windows': self.windows(first)}
        scope = r.random()
        if scope < 0.12:
            p['country_codes'] = ['1']
        elif scope < 0.18:
            p['country_codes'], p['area_codes'] = ['1'], r.sample(['212', '213', '208', '709', '907', '555'], 2)
        elif scope < 0.24:
            p['country_codes'] = r.sample(['33', '44', '56', '61', '64', '351'], 2)
        elif scope < 0.32:
            p['campaigns'] = r.sample([c['name'] for c in CAMPAIGNS], 2)
        if r.random() < 0.45:
            p['blackout_calendars'] = r.sample(CALENDARS, r.randint(1, 2))
        if cap or r.random() < 0.3:
            p['max_calls'], p['cap_period'] = r.randint(1, 4), r.choice(CAP_PERIODS)
        if not cap and r.random() < 0.2:
            p['refusal_silence'] = r.choice(SILENCES)
        if not cap and r.random() < 0.15:
            p['require_consent'] = True
        self.world['policies'].append(p)
        return p

    def make_groups(self, n_groups, n_cap_groups):
        for g in range(n_groups):
            provider = 'model_pv%02d' % g
            policies = [self.policy('model_%02d%s' % (g, k), provider, first=k == 'a')
                        for k in 'abc'[:self.rng.choice([1, 1, 2, 2, 3])]]
            self.groups.append((provider, self.mostly_open(policies, never=g % 10 == 9)))
        for g in range(n_cap_groups):
            provider = 'model_cap%d' % g
            policies = [self.policy('model_cap%d' % g, provider, cap=True, first=False)]
            if g % 2:       # a second cap, of another period, in the same group
                policies.append(self.policy('model_cap%db' % g, provider, cap=True, first=False))
            self.cap_groups.append((provider, self.mostly_open(policies, never=False)))
        for cal in CALENDARS:
            for day in self.rng.sample(range((END - START) // DAY), 25):
                self.holiday(cal, dt.datetime.fromtimestamp(START + day * DAY, dt.timezone.utc).date())

    @staticmethod
    def mostly_open(policies, never):
        """The policies of a group, whose windows (without the general window) must meet
        at some quarter hour of the week unless never: else only the first keeps its windows
        (a group that never opens costs the model a search of its whole horizon)."""
        def opens(days_and_secs):
            d, secs = days_and_secs
            return all(not p['windows'] or any(d in w['weekdays'] and w['starts'] <= '%02d:%02d' % divmod(secs // 60, 60)
                                               < w['ends'] for w in p['windows']) for p in policies)
        if not never and not any(opens((d, q * 900)) for d in ALL_DAYS for q in range(96)):
            for p in policies[1:]:
                p['windows'] = []
        return policies

    def holiday(self, calendar, day):
        if not any(b['calendar'] == calendar and b['day'] == day.isoformat() for b in self.world['blackout_dates']):
            self.world['blackout_dates'].append({'calendar': calendar, 'day': day.isoformat(), 'name': 'holiday %s' % day})

    # ----------------------------------------------------------------- numbers and ledgers
    def number(self, prefix):
        digits = prefix + ''.join(self.rng.choice('0123456789') for _ in range(max(11 - len(prefix), 3)))
        return '+' + digits[:15]

    def numbers(self, n):
        """(number, focus instant, DST zone or None) for n numbers of every kind."""
        r = self.rng
        plain = [p for p, z in self.number_zones.items() if len(z) == 1 and len(p) >= 2]
        out = []
        for i in range(n):
            kind = i % 20
            if kind < 8:            # near a DST change of the number's zone
                z = r.choice(DST_ZONES)
                out.append((self.number(PREFIXES[z]), r.choice(self.dst[z]) + r.randint(-36, 36) * HOUR, z))
                continue
            if kind < 12:
                prefix = r.choice(MULTI_PREFIXES)
            elif kind == 12:
                prefix = NANP_ANY
            elif kind == 13:
                prefix = UNKNOWN
            else:
                prefix = r.choice(plain)
            out.append((self.number(prefix), r.randrange(START + 40 * DAY, END - 70 * DAY), None))
        return out

    def ledgers(self, number, focus, unsettled):
        r = self.rng
        kinds = SETTLED + (UNSETTLED * 2 if unsettled else [])
        for _ in range(r.choice([0, 1, 2, 3, 4, 5, 6] if not unsettled else [2, 3, 4, 5, 6, 7])):
            status, http, has_id = r.choice(kinds)
            self.calls += 1
            at = focus - r.choice([r.randint(0, 40 * DAY), r.randint(0, 2 * DAY), r.randint(0, 3 * HOUR)])
            attempt = 1
            if r.random() < 0.1:        # the call's first request was refused, this is its retry
                self.world['attempts'].append({'call': self.calls, 'attempt': 1, 'number': number, 'status': status,
                                               'requested_at': iso(at - 600), 'http_status': 503,
                                               'provider_call_id': None})
                attempt = 2
            self.world['attempts'].append({'call': self.calls, 'attempt': attempt, 'number': number, 'status': status,
                                           'requested_at': iso(at), 'http_status': http,
                                           'provider_call_id': 'CAmodel%08d' % self.calls if has_id else None})
        if r.random() < 0.5:
            for _ in range(r.randint(1, 2)):
                granted = focus - r.randint(0, 10 * DAY)
                revoked = granted + r.randint(0, 12 * DAY) if r.random() < 0.35 else None
                self.world['consents'].append({'number': number, 'purpose': r.choice(PURPOSES), 'granted_at': iso(granted),
                                               'revoked_at': iso(revoked), 'revoked_via': revoked and 'SMS STOP'})
        if r.random() < 0.3:
            for _ in range(r.randint(1, 2)):
                self.world['refusals'].append({'number': number, 'refused_at': iso(focus - r.randint(0, 70 * DAY)),
                                               'purpose': r.choice([None, None, 'reminder', 'model_c1', 'billing'])})

    # ----------------------------------------------------------------- cases
    def case(self, model, number, focus, dst_zone, groups):
        r = self.rng
        provider, policies = r.choice(groups) if r.random() > 0.03 else ('model_pv_none', [])
        call = {'number': number, 'provider': provider,
                'timezone': r.choice(ZONES) if r.random() < 0.2 else None,
                'campaign': r.choice([c['name'] for c in CAMPAIGNS]) if r.random() < 0.35 else None,
                'purpose': r.choice(PURPOSES) if r.random() < 0.3 else None,
                'window_start': None, 'window_end': None}
        if dst_zone and r.random() < 0.5:
            call['timezone'] = dst_zone
        if r.random() < 0.3:
            call['window_start'], call['window_end'] = r.choice(GENERAL_WINDOWS)
        if any(w['ends'] <= '08:00' or w['starts'] >= '21:00' for p in policies for w in p['windows']) \
                and r.random() < 0.6:
            # windows at night are mostly tried under a general window of the whole day
            call['window_start'], call['window_end'] = '00:00', '24:00'
            if r.random() < 0.5:
                call['window_start'] = call['window_end'] = None
                call['campaign'] = 'model_c6'

        zones = model.zones(number, call['timezone'], call['campaign']) or ['UTC']
        z = r.choice(zones)
        how = r.random()
        near = [instant(a['requested_at']) for a in model.attempts.get(number, [])]
        near += [instant(x[k]) for x in model.consents.get(number, []) for k in ('granted_at', 'revoked_at') if x[k]]
        near += [instant(x['refused_at']) for x in model.refusals.get(number, [])]
        if dst_zone and how < 0.3:
            # across the DST change: any minute within 3 hours, or a local time of the day
            # the clocks skip or repeat, first or second time
            change = min(self.dst[dst_zone], key=lambda t: abs(t - focus))
            if r.random() < 0.5:
                at = change + r.randint(-180, 180) * 60
            else:
                day = dt.datetime.fromtimestamp(change, zone(dst_zone)).date()
                at = local_instant(dst_zone, day, r.randrange(0, 4 * 4) * 900 + r.choice([0, 0, 60]), r.randint(0, 1))
        elif how < 0.45 and near:
            # on a bound, to the second: an attempt made or leaving a cap's period, a consent
            # given or revoked, a silence after a refusal ending
            at = (r.choice(near) + r.choice([0, 0, HOUR, 12 * HOUR, DAY, 7 * DAY, 30 * DAY, 60 * DAY])
                  + r.choice([0, 0, 1, -1]))
        elif how < 0.7:
            # around the recipient's midnight, some with a holiday on that local date
            day = dt.datetime.fromtimestamp(focus, zone(z)).date() + dt.timedelta(days=r.randint(-3, 3))
            at = local_instant(z, day, 0, 0) + r.choice([-1, 0, 1]) * r.choice([60, 900, 1800, 3 * HOUR])
            local_day = dt.datetime.fromtimestamp(at, zone(z)).date()
            if r.random() < 0.5 and local_day != dt.datetime.fromtimestamp(at, dt.timezone.utc).date():
                cals = [c for p in policies for c in p['blackout_calendars']]
                if cals:
                    self.holiday(r.choice(cals), local_day)
        elif how < 0.82:
            # on a window's bound, in local time
            wins = [w for p in policies for w in p['windows']] or [{'starts': '08:00', 'ends': '21:00'}]
            w = r.choice(wins)
            day = dt.datetime.fromtimestamp(focus, zone(z)).date() + dt.timedelta(days=r.randint(-3, 3))
            secs = min(sum(int(x) * m for x, m in zip(w[r.choice(['starts', 'ends'])].split(':'), (3600, 60))), DAY - 60)
            at = local_instant(z, day, secs, r.randint(0, 1)) + r.choice([0, 0, -60, 60])
        else:
            at = focus + r.randint(-2 * DAY, 3 * DAY) // 60 * 60
        call['at'] = iso(at)
        return call

    def generate(self, n_cases, n_cap_cases):
        self.make_groups(40, 6)
        model_numbers = self.numbers(max(n_cases // 25, 1))
        cap_numbers = self.numbers(max(n_cap_cases // 25, 1))
        for number, focus, _ in model_numbers:
            self.ledgers(number, focus, unsettled=False)
        for number, focus, _ in cap_numbers:
            self.ledgers(number, focus, unsettled=True)
        # the cases first (they add holidays), then the model's verdicts on the final world
        model = Model(self.world, self.number_zones)
        cases = []
        for family, numbers, count, groups in (('policies', model_numbers, n_cases, self.groups + self.cap_groups),
                                               ('cap', cap_numbers, n_cap_cases, self.cap_groups)):
            # a bare NANP number (42 zones) gets few cases: a search for an opening that never
            # comes tries every start in every zone for 60 days, a second of the engine's time
            few = [n for n in numbers if n[0].startswith('+' + NANP_ANY)][:2]
            many = [n for n in numbers if not n[0].startswith('+' + NANP_ANY)]
            picks = [n for n in few for _ in range(5)]
            picks += [many[i % len(many)] for i in range(count - len(picks))]
            for number, focus, dst_zone in picks:
                c = self.case(model, number, focus, dst_zone, groups)
                c['family'] = family
                cases.append(c)
        model = Model(self.world, self.number_zones)
        kept = []
        for i, c in enumerate(cases):
            v = model.verdict(c, horizon=70 * DAY)
            # an opening beyond 30 days is too close to the engine's search horizon (60 days
            # and a little) to say what it should answer: such cases are not kept
            opening = v['answers'][0][2]
            if v['decision'] == 'park' and opening > instant(c['at']) + 30 * DAY:
                continue
            c['id'] = i + 1
            c['expected'] = {'decision': v['decision'], 'policies': v['policies'], 'zones': v['zones'],
                             'answers': [[p, rule, iso(t)] for p, rule, t in v['answers']]}
            c['check_next_opening'] = c['window_start'] is None and c['purpose'] is None
            c['local'] = ', '.join(dt.datetime.fromtimestamp(instant(c['at']), zone(z)).strftime('%a %Y-%m-%d %H:%M:%S ')
                                   + z for z in (v['zones'] or [])[:4]) + (' ...' if len(v['zones'] or []) > 4 else '')
            kept.append(c)
        return kept


def coverage(model, cases):
    """How many cases of each kind there are (the test checks the counts)."""
    cov = {}
    add = lambda k: cov.__setitem__(k, cov.get(k, 0) + 1)
    for c in cases:
        e = c['expected']
        add('family ' + c['family'])
        add('decision ' + e['decision'])
        for p, rule, _ in e['answers'][:1]:
            if rule:
                add('rule ' + rule)
        zones = e['zones'] or []
        at = instant(c['at'])
        if len(zones) > 1:
            add('several zones')
        if zones:
            local = dt.datetime.fromtimestamp(at, zone(zones[0]))
            add('local weekday %d' % local.isoweekday())
            if e['decision'] == 'allow' and local.isoweekday() == 7 and e['policies']:
                add('allowed on a local Sunday')
            if any(abs(at - t) <= 3 * HOUR for t in dst_changes_cached(zones[0])):
                add('within 3 hours of a DST change')
            if local.date() != dt.datetime.fromtimestamp(at, dt.timezone.utc).date():
                add('local date is not the UTC date')
                if any(rule == 'blackout' for _, rule, _ in e['answers']):
                    add('holiday on a local date that is not the UTC date')
        pols = [p for p in model.policies if p['name'] in e['policies']]
        if any(len([w for w in p['windows'] if d in w['weekdays']]) > 1 for p in pols for d in ALL_DAYS):
            add('split windows')
        if e['decision'] == 'refuse' and e['answers'][0][1] == 'cap':
            period = max(interval(p['cap_period']) for p in pols if p['max_calls'] is not None)
            if any(a['http_status'] is None and at - period < instant(a['requested_at']) <= at
                   for a in model.attempts.get(c['number'], [])):
                add('cap reached with an attempt in flight')
    return dict(sorted(cov.items()))


_dst_cache = {}


def dst_changes_cached(name):
    """dst_changes(name), computed once."""
    if name not in _dst_cache:
        _dst_cache[name] = dst_changes(name)
    return _dst_cache[name]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('--seed', type=int, default=21)
    ap.add_argument('--cases', type=int, default=10200, help='cases of the policies family')
    ap.add_argument('--cap-cases', type=int, default=1500, help='cases of the cap family')
    ap.add_argument('--window', default='08:00-21:00', help='dialer.call_window_start-_end of the server')
    args = ap.parse_args()
    ws, we = args.window.split('-')
    gen = Generator(args.seed, {'call_window_start': ws, 'call_window_end': we}, read_number_zones())
    cases = gen.generate(args.cases, args.cap_cases)
    json.dump({'world': gen.world, 'cases': cases, 'coverage': coverage(Model(gen.world, gen.number_zones), cases)},
              sys.stdout)


if __name__ == '__main__':
    main()
