"""The Lua scripts of the shared limiter: GCRA on Redis' clock, in microseconds.

Each runs atomically on the server. ``PRELUDE`` reads the clock (``TIME``) and
defines two helpers; a budget is one hash with ``tat`` (the theoretical arrival
time of the next grant) and ``dep`` (the same, counted from departures), which
expires ``SLACK_MS`` after the later of the two. The pause is one string key:
the Redis time, in microseconds, until which every worker holds.
"""

from __future__ import annotations

from typing import Final

US: Final = 1_000_000  # the scripts count in microseconds of Redis time
SLACK_MS: Final = 1000  # a key outlives the last instant it matters by this much

PRELUDE: Final = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local function field(key, name)
  return tonumber(redis.call('HGET', key, name) or 0)
end
local function store(key, tat, dep, slack)
  redis.call('HSET', key, 'tat', string.format('%.0f', tat), 'dep', string.format('%.0f', dep))
  redis.call('PEXPIRE', key, math.ceil((math.max(tat, dep) - now) / 1000) + slack)
end
"""
# KEYS: budget, pause. ARGV: interval, tolerance (both us), slack (ms).
# Returns {1, wait}: a slot reserved `wait` us from now; {0, left}: paused for `left` us.
ACQUIRE: Final = """
local paused = tonumber(redis.call('GET', KEYS[2]) or 0)
if paused > now then
  return {0, paused - now}
end
local tat = math.max(field(KEYS[1], 'tat'), now)
local wait = math.max(tat - tonumber(ARGV[2]) - now, 0)
store(KEYS[1], tat + tonumber(ARGV[1]), field(KEYS[1], 'dep'), tonumber(ARGV[3]))
return {1, wait}
"""
# KEYS: budget. ARGV: interval, tolerance, microseconds since the grant, slack.
# Returns 0 when the request may leave now (and counts it), else the wait in us.
DEPART: Final = """
local interval = tonumber(ARGV[1])
local dep = math.max(field(KEYS[1], 'dep'), now)
local wait = dep - tonumber(ARGV[2]) - now
if wait > 0 then
  return wait
end
local tat = math.max(field(KEYS[1], 'tat'), now) + math.min(tonumber(ARGV[3]), interval)
store(KEYS[1], tat, dep + interval, tonumber(ARGV[4]))
return 0
"""
# KEYS: pause. ARGV: the pause in us, slack. A longer pause already set is kept.
PAUSE: Final = """
local pause_until = now + tonumber(ARGV[1])
if pause_until > tonumber(redis.call('GET', KEYS[1]) or 0) then
  local ttl = math.ceil(tonumber(ARGV[1]) / 1000) + tonumber(ARGV[2])
  redis.call('SET', KEYS[1], string.format('%.0f', pause_until), 'PX', ttl)
end
return 0
"""
# KEYS: pause. Returns the microseconds left of the pause (0 when none).
PAUSE_LEFT: Final = """
return math.max(tonumber(redis.call('GET', KEYS[1]) or 0) - now, 0)
"""
SCRIPTS: Final = {
    "acquire": ACQUIRE,
    "depart": DEPART,
    "pause": PAUSE,
    "pause_left": PAUSE_LEFT,
}
