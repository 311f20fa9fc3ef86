"""The Lua scripts of worker-computed fragments: a key's lease and its one job, atomically.

Keys: the key's lease (the Redis store's ``{prefix}lease:{key}``), its job marker
``{prefix}job:{key}`` (the token of the job pending for that key, if any) and the queue's
stream.  Someone else's data under a key (a wrong type) counts as absent and is overwritten.
"""

from __future__ import annotations

from ._redis_scripts import _TOLERANT

# The pending entry ARGV[n+1] of group ARGV[n] on stream KEYS[s] belongs to consumer ARGV[n+2].
_OWNED = """
local function owned(stream, group, id, consumer)
    local p = redis.call('XPENDING', stream, group, id, id, 1)
    return #p == 1 and p[1][2] == consumer
end
"""

# Acknowledged entries older than ``keep_ms`` leave the stream, so it does not grow with every
# job ever run: never an entry still pending (taken, not acknowledged) nor one not yet read
# (after the group's last-delivered id, which is kept too): the cutoff is the oldest of those.
_TRIM = """
local function before(a, b)
    local am, as = string.match(a, '^(%d+)-(%d+)$')
    local bm, bs = string.match(b, '^(%d+)-(%d+)$')
    am, as, bm, bs = tonumber(am), tonumber(as), tonumber(bm), tonumber(bs)
    return am < bm or (am == bm and as < bs)
end
local function trim(stream, group, keep_ms)
    local now = redis.call('TIME')
    local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) - keep_ms
    local cutoff = string.format('%d-0', ms)
    local summary = redis.call('XPENDING', stream, group)
    if summary[2] and before(summary[2], cutoff) then cutoff = summary[2] end
    for _, g in ipairs(redis.call('XINFO', 'GROUPS', stream)) do
        for i = 1, #g, 2 do
            if g[i] == 'last-delivered-id' and before(g[i + 1], cutoff) then cutoff = g[i + 1] end
        end
    end
    if ms > 0 then redis.call('XTRIM', stream, 'MINID', cutoff) end
end
"""

__all__ = ["CLAIM_OR_ENQUEUE", "FINISH", "RETRY", "TOUCH", "TRIM"]

# KEYS: lease, marker, stream, the queue service's set of queue names; ARGV: token, lease ms,
# marker ms, job (JSON), queue name.
# The lease held by another token: {0, holder, pttl}, wait for its notice.  A job pending for
# the key (its lease lapsed while no worker ran): the lease is taken again in the job's name,
# {0, job token, lease ms}, never a second job.  Else the lease is ours and one job is added
# in the same step: {1, token, lease ms, job id}.
CLAIM_OR_ENQUEUE = (
    _TOLERANT
    + """
local held = tolerant('GET', KEYS[1])
if held and held ~= ARGV[1] then
    local pttl = redis.call('PTTL', KEYS[1])
    if pttl > 0 then return {0, held, pttl} end
end
local pending = tolerant('GET', KEYS[2])
if pending then
    redis.call('SET', KEYS[1], pending, 'PX', ARGV[2])
    return {0, pending, tonumber(ARGV[2])}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[3])
local id = redis.call('XADD', KEYS[3], '*', 'job', ARGV[4])
tolerant('SADD', KEYS[4], ARGV[5])
return {1, ARGV[1], tonumber(ARGV[2]), id}
"""
)
# The job's last attempt ended (stored, or failed for good): KEYS marker, stream, lease, dead
# (or none); ARGV token, group, entry id, consumer, channel, notice, ms to keep acknowledged
# entries, dead record (or none).
# Only while the entry is still this consumer's (else another worker took it over: 0): the
# marker goes if it is still this job's, the entry is acknowledged, a dead record is added,
# then the key's lease is released and the notice published: one round trip between the
# stored result and its waiters.  Returns 1.
FINISH = (
    _TOLERANT
    + _OWNED
    + _TRIM
    + """
if not owned(KEYS[2], ARGV[2], ARGV[3], ARGV[4]) then return 0 end
if tolerant('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if KEYS[4] then redis.call('XADD', KEYS[4], 'MAXLEN', '~', 10000, '*', 'job', ARGV[8]) end
redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])
trim(KEYS[2], ARGV[2], tonumber(ARGV[7]))
if tolerant('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
redis.call('PUBLISH', ARGV[5], ARGV[6])
return 1
"""
)
# Hand a job back to the queue (another attempt, or given back at shutdown): KEYS stream;
# ARGV group, entry id, consumer, job (JSON), ms to keep acknowledged entries.  Acknowledged
# and added again in one step:
# never lost, never twice.  Returns the new id, or false if the entry is no longer ours.
RETRY = (
    _OWNED
    + _TRIM
    + """
if not owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return false end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
local id = redis.call('XADD', KEYS[1], '*', 'job', ARGV[4])
trim(KEYS[1], ARGV[1], tonumber(ARGV[5]))
return id
"""
)
# Keep a running job ours: its idle time back to 0, only if it is still this consumer's.
# KEYS stream; ARGV group, entry id, consumer.  Returns 1, or 0 if another worker took it.
TOUCH = (
    _OWNED
    + """
if not owned(KEYS[1], ARGV[1], ARGV[2], ARGV[3]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[3], 0, ARGV[2], 'JUSTID')
return 1
"""
)
# Only the trim, for tests and tools: KEYS stream; ARGV group, ms to keep.  Returns XLEN.
TRIM = (
    _TRIM
    + """
trim(KEYS[1], ARGV[1], tonumber(ARGV[2]))
return redis.call('XLEN', KEYS[1])
"""
)
