"""
An independent model of pg_dialer's calling-policy decision, for tests only.

test/integration/policy_model.test.js compares dialer.compliance_verdict() and
dialer.next_opening() with it over many generated cases (test/lib/policy_cases.py).  It is
written from README's "Compliance" section (doc/compliance.md), not from the SQL, and kept
short so that it reads as the rules themselves.  A call to a number at an instant:

  1. The policies that apply: enabled, and every non-empty scope list matches (country
     calling code, NANP area code, campaign, provider).  None: allowed.
  2. The recipient's zones: the call's, else its campaign's, else the number's from
     libphonenumber's data (longest prefix; sql/install/data/number_timezones.txt).
  3. Refused: zone unknown; a policy requires consent and none is in force for the call's
     purpose (payload purpose, else campaign); a silence after a refusal still runs.  Then,
     refused: a cap reached (attempts in (at - period, at] the provider did not refuse; it
     frees when the max_calls-th most recent leaves the period).
  4. Parked: a blackout day (the recipient's local date), no policy window open on the local
     weekday and time, or outside the general window, in any zone; until the first instant
     when all are open in all zones, found by brute force (below).  Refused when there is
     none within the search horizon.

Instants are integers (seconds since 1970, UTC); local times come from Python's zoneinfo.
Intervals are read as fixed lengths (a day is 24 hours: the test's session is in UTC).
"""

import datetime as dt
import os
from zoneinfo import ZoneInfo

GRID = 900          # 15 minutes: see next_open()
DAY = 86400

_zone_cache = {}


def zone(name):
    """The zoneinfo zone of an IANA name (cached)."""
    if name not in _zone_cache:
        _zone_cache[name] = ZoneInfo(name)
    return _zone_cache[name]


_checked_zones = set()


def on_grid(name, since=1767225600, years=2.5):
    """
    Checks that a zone's offsets from UTC, and the instants they change, are multiples of
    15 minutes in the years from since (2026-01-01) on: true of every zone today; an
    assertion error if not.
    """
    if name in _checked_zones:
        return
    z = zone(name)
    offset = lambda t: dt.datetime.fromtimestamp(t, z).utcoffset().total_seconds()
    t = since
    while t < since + years * 365 * DAY:
        assert offset(t) % GRID == 0, (name, t)
        if offset(t) != offset(t + 6 * 3600):
            lo, hi = t, t + 6 * 3600        # a change is in (lo, hi]: find it to the second
            while hi - lo > 1:
                mid = (lo + hi) // 2
                lo, hi = (mid, hi) if offset(mid) == offset(lo) else (lo, mid)
            assert hi % GRID == 0, (name, hi)
        t += 6 * 3600
    _checked_zones.add(name)


def instant(text):
    """'2026-03-08T07:00:00Z' (or None) as seconds since 1970."""
    if text is None:
        return None
    return int(dt.datetime.fromisoformat(text.replace('Z', '+00:00')).timestamp())


def iso(seconds):
    """Seconds since 1970 (or None) as '2026-03-08T07:00:00Z'."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def clock(text):
    """A local time 'HH:MM[:SS]' as seconds after midnight ('24:00' is 86400)."""
    parts = [int(x) for x in text.split(':')]
    return parts[0] * 3600 + parts[1] * 60 + (parts[2] if len(parts) > 2 else 0)


def interval(text):
    """'30 days', '24 hours', '90 minutes' (or None) as seconds."""
    if text is None:
        return None
    n, unit = text.split()
    return int(n) * {'day': DAY, 'hour': 3600, 'minute': 60}[unit.rstrip('s')]


def read_number_zones(path=None):
    """libphonenumber's prefix -> zones map, as shipped with the extension."""
    path = path or os.path.join(os.path.dirname(__file__), '..', '..', 'sql', 'install', 'data',
                                'number_timezones.txt')
    out = {}
    with open(path, encoding='utf-8') as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith('#'):
                prefix, zones = line.split('|')
                out[prefix] = zones.split('&')
    return out


class Model:
    """The rules and ledgers of one database (a 'world', plain data: see policy_cases.py)."""

    def __init__(self, world, number_zones):
        self.number_zones = number_zones
        self.policies = sorted(world['policies'], key=lambda p: p['name'])
        calendars = {}
        for b in world['blackout_dates']:
            calendars.setdefault(b['calendar'], set()).add(dt.date.fromisoformat(b['day']))
        # per policy: its blackout days (of all its calendars); its windows, per ISO weekday, as
        # [start, end) in seconds of the local day (None: no windows, no time-of-day rule)
        self.blackout = {p['name']: set().union(*(calendars.get(c, set()) for c in p['blackout_calendars']))
                         for p in self.policies}
        self.windows = {p['name']: {d: [(clock(w['starts']), clock(w['ends'])) for w in p['windows'] if d in w['weekdays']]
                                    for d in range(1, 8)} if p['windows'] else None
                        for p in self.policies}
        self.campaigns = {c['name']: c for c in world['campaigns']}
        # the ledgers, by number
        self.consents, self.refusals, self.attempts = {}, {}, {}
        for ledger, rows in ((self.consents, world['consents']), (self.refusals, world['refusals']),
                             (self.attempts, world['attempts'])):
            for row in rows:
                ledger.setdefault(row['number'], []).append(row)
        self.settings = world['settings']

    # 1. scope
    def applicable(self, number, campaign, provider):
        def covers(p):
            return (p['enabled']
                    and (not p['country_codes'] or any(number.startswith('+' + c) for c in p['country_codes']))
                    and (not p['area_codes'] or number[2:5] in p['area_codes'])
                    and (not p['campaigns'] or campaign in p['campaigns'])
                    and (not p['providers'] or provider in p['providers']))
        return [p for p in self.policies if covers(p)]

    # 2. zones
    def zones(self, number, timezone, campaign):
        if timezone:
            return [timezone]
        k = self.campaigns.get(campaign)
        if k and k['timezone']:
            return [k['timezone']]
        digits = number[1:]
        for n in range(len(digits), 0, -1):
            z = self.number_zones.get(digits[:n])
            if z is not None:
                return None if z == ['Etc/Unknown'] else z
        return None

    def general_window(self, campaign, window_start, window_end):
        """The general window: the one given, else the campaign's, else the settings'."""
        k = self.campaigns.get(campaign) or {}
        ws = window_start or k.get('call_window_start') or self.settings['call_window_start']
        we = window_end or k.get('call_window_end') or self.settings['call_window_end']
        return clock(ws), (clock(we) or DAY)        # an end of 00:00 is midnight, the day's end

    # 3. the ledger and the caps
    def ledger_refusals(self, p, number, at, purpose, campaign):
        out = []
        if p['require_consent']:
            wanted = purpose or campaign
            if not any(wanted is not None and k['purpose'] == wanted
                       and instant(k['granted_at']) <= at
                       and (k['revoked_at'] is None or instant(k['revoked_at']) > at)
                       for k in self.consents.get(number, [])):
                out.append((p['name'], 'consent', None))
        silence = interval(p['refusal_silence'])
        if silence:
            # a refusal silences calls of its purpose, or every call when it names none; a
            # call that states no purpose is silenced by any refusal (it might be that one)
            ends = [instant(r['refused_at']) + silence for r in self.refusals.get(number, [])
                    if instant(r['refused_at']) <= at < instant(r['refused_at']) + silence
                    and (r['purpose'] is None or purpose is None or r['purpose'] in (purpose, campaign))]
            if ends:
                out.append((p['name'], 'refusal_silence', max(ends)))
        return out

    def cap_refusal(self, p, number, at):
        if p['max_calls'] is None:
            return []
        period = interval(p['cap_period'])
        counted = sorted((instant(a['requested_at']) for a in self.attempts.get(number, [])
                          if at - period < instant(a['requested_at']) <= at
                          and not (a['http_status'] is not None and not 200 <= a['http_status'] <= 299)),
                         reverse=True)
        if len(counted) < p['max_calls']:
            return []
        frees = counted[p['max_calls'] - 1] + period if p['max_calls'] > 0 else None
        return [(p['name'], 'cap', frees)]

    # 4. the rules of the time of day
    def closures(self, policies, zones, t, ws, we):
        """Yields the (policy, rule) pairs closed at instant t, zone by zone."""
        for z in zones:
            local = dt.datetime.fromtimestamp(t, zone(z))
            day, weekday = local.date(), local.isoweekday()
            secs = local.hour * 3600 + local.minute * 60 + local.second
            for p in policies:
                name = p['name']
                if day in self.blackout[name]:
                    yield name, 'blackout'
                windows = self.windows[name]
                if windows and not any(starts <= secs < ends for starts, ends in windows[weekday]):
                    yield name, 'window'
            if not ws <= secs < we:
                yield 'dialer.call_window', 'window'

    def closed(self, policies, zones, t, ws, we):
        """The (policy, rule) pairs closed at instant t in some zone."""
        return set(self.closures(policies, zones, t, ws, we))

    def is_open(self, policies, zones, t, ws, we):
        """True when no rule is closed at instant t in any zone."""
        return next(self.closures(policies, zones, t, ws, we), None) is None

    def next_open(self, policies, zones, at, ws, we, horizon):
        """
        The first instant after at when nothing is closed, by trying every 15-minute
        instant of UTC in turn.  That is exhaustive: every window bound is a multiple of 15
        minutes of local time (policy_cases.py makes them so), and every zone's offset from
        UTC and every change of it (DST) is a multiple of 15 minutes too (on_grid checks it),
        so no rule opens or closes strictly between two such instants.
        """
        for z in zones:
            on_grid(z)
        t = (at // GRID + 1) * GRID
        while t <= at + horizon:
            if self.is_open(policies, zones, t, ws, we):
                return t
            t += GRID
        return None

    def verdict(self, call, horizon=60 * DAY):
        """
        The decision for a call: {'decision', 'policies', 'zones', 'answers'}, answers being
        every (policy, rule, next_opening) the engine may name for it (when several rules
        refuse or close at once, README does not say which one is reported).
        """
        number, at, campaign, purpose = call['number'], instant(call['at']), call['campaign'], call['purpose']
        policies = self.applicable(number, campaign, call['provider'])
        names = [p['name'] for p in policies]
        if not policies:
            return {'decision': 'allow', 'policies': [], 'zones': None, 'answers': [(None, None, None)]}
        zones = self.zones(number, call['timezone'], campaign)
        first = [] if zones else [(name, 'unknown_timezone', None) for name in names]
        for p in policies:
            first += self.ledger_refusals(p, number, at, purpose, campaign)
        caps = [r for p in policies for r in self.cap_refusal(p, number, at)]
        if first or caps:
            return {'decision': 'refuse', 'policies': names, 'zones': zones, 'answers': first or caps}
        ws, we = self.general_window(campaign, call['window_start'], call['window_end'])
        closed = self.closed(policies, zones, at, ws, we)
        if not closed:
            return {'decision': 'allow', 'policies': names, 'zones': zones, 'answers': [(None, None, None)]}
        opening = self.next_open(policies, zones, at, ws, we, horizon)
        return {'decision': 'park' if opening else 'refuse', 'policies': names, 'zones': zones,
                'answers': [(p, r, opening) for p, r in sorted(closed)]}
