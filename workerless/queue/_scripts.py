"""The Lua scripts of the queue engine: each one round trip, atomic, on one queue's keys.

Every script gets the queue's key prefix as KEYS[1] (``{prefix}q:{name}:``, a hash tag so a
queue's keys share a slot) and builds the key names from it.  Jobs live in one stream per
priority (``s:high``, ``s:normal``, ``s:low``, consumer group ``workers``); each entry carries
only the job id, whose body (``body``, the JSON text as posted) and metadata (``meta``, a
small JSON object: priority ``p``, stream entry ``s``, earlier attempts ``a``, uniq key ``u``,
creation ms ``c``, last error ``e``) live in two hashes.  Each take reads as a consumer of its
own (the lease token), so the pending entry's consumer says who holds the lease.
"""

from __future__ import annotations

__all__ = [
    "DEAD_DELETE",
    "DEAD_RETRY",
    "ENQUEUE",
    "FINISH",
    "INFO",
    "STATUS",
    "TAKE",
    "WAITING",
]

# Shared helpers.  now(): Redis's clock in ms, the same for every process.
_COMMON = """
local base = KEYS[1]
local PRIORITIES = {'high', 'normal', 'low'}
local function now()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function signal()
    redis.call('XADD', base .. 'signal', 'MAXLEN', '~', 100, '*', 'w', '1')
end
local function get_meta(id)
    local raw = redis.call('HGET', base .. 'meta', id)
    if not raw then return nil end
    local ok, meta = pcall(cjson.decode, raw)
    if not ok or type(meta) ~= 'table' then return nil end
    return meta
end
local function put_meta(id, meta)
    redis.call('HSET', base .. 'meta', id, cjson.encode(meta))
end
-- Append the job to its priority's stream (creating the stream and its group on first use).
local function add(id, meta)
    local stream = base .. 's:' .. meta.p
    redis.pcall('XGROUP', 'CREATE', stream, 'workers', '0', 'MKSTREAM')
    meta.s = redis.call('XADD', stream, '*', 'id', id)
    put_meta(id, meta)
end
local function release_uniq(id, meta)
    if meta.u and meta.u ~= '' and redis.call('GET', base .. 'u:' .. meta.u) == id then
        redis.call('DEL', base .. 'u:' .. meta.u)
    end
end
local function forget(id, meta)
    release_uniq(id, meta)
    redis.call('HDEL', base .. 'meta', id)
    redis.call('HDEL', base .. 'body', id)
end
local function bury(id, meta, reason, t)
    meta.s = ''
    meta.e = reason
    release_uniq(id, meta)
    put_meta(id, meta)
    redis.call('ZADD', base .. 'dead', t, id)
    redis.call('HINCRBY', base .. 'counts', 'dead', 1)
end
local function count(name, t)
    redis.call('HINCRBY', base .. 'counts', name, 1)
    local bucket = base .. 'rate:' .. name .. ':' .. math.floor(t / 10000)
    redis.call('INCR', bucket)
    redis.call('PEXPIRE', bucket, 30000)
end
-- The pending entry of a taken job, checked against the lease token: {stream, sid} or an error.
local function held(id, lease)
    local meta = get_meta(id)
    if not meta then return nil, 'unknown' end
    if not meta.s or meta.s == '' then return nil, 'not-taken' end
    local stream = base .. 's:' .. meta.p
    local p = redis.call('XPENDING', stream, 'workers', meta.s, meta.s, 1)
    if #p == 0 then return nil, 'not-taken' end
    if p[1][2] ~= lease then return nil, 'moved' end
    return {meta = meta, stream = stream, deliveries = tonumber(p[1][4])}, nil
end
local function next_due()
    local first = redis.call('ZRANGE', base .. 'delayed', 0, 0, 'WITHSCORES')
    if #first == 0 then return -1 end
    return tonumber(first[2])
end
"""

# ARGV: queue name, id, body, priority, delay ms, uniq key ('' for none).
# Returns {1, id} (added) or {0, id of the pending job holding the uniq key}.
ENQUEUE = (
    _COMMON
    + """
local id, body, priority, delay, uniq = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6]
local t = now()
if uniq ~= '' then
    local existing = redis.call('GET', base .. 'u:' .. uniq)
    if existing then return {0, existing} end
    redis.call('SET', base .. 'u:' .. uniq, id)
end
redis.call('SADD', KEYS[2], ARGV[1])
redis.call('HSET', base .. 'body', id, body)
local meta = {p = priority, a = 0, u = uniq, c = t, s = '', e = ''}
if delay > 0 then
    put_meta(id, meta)
    redis.call('ZADD', base .. 'delayed', t + delay, id)
    signal()
else
    add(id, meta)
end
count('enqueued', t)
return {1, id}
"""
)

# ARGV: consumer (the new lease token), lease ms, max attempts.
# Moves due delayed jobs into their streams, then gives the first job: an expired lease
# first, else a new entry, high priority first.  Returns {id, body, priority, attempt,
# ms until the next delayed job is due or -1, the last ids of the three streams and of the
# signal stream}; id is '' when there is nothing to take (or the queue is stopped).
TAKE = (
    _COMMON
    + """
local consumer, lease, max_attempts = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local t = now()
local due = redis.call('ZRANGEBYSCORE', base .. 'delayed', '-inf', t, 'LIMIT', 0, 100)
for _, id in ipairs(due) do
    redis.call('ZREM', base .. 'delayed', id)
    local meta = get_meta(id)
    if meta then add(id, meta) end
end
local function last_ids()
    local ids = {}
    for _, name in ipairs({'s:high', 's:normal', 's:low', 'signal'}) do
        local last = redis.call('XREVRANGE', base .. name, '+', '-', 'COUNT', 1)
        ids[#ids + 1] = (#last > 0) and last[1][1] or '0-0'
    end
    return ids
end
local function answer(id, meta, attempt)
    local body = redis.call('HGET', base .. 'body', id) or 'null'
    local due = next_due()
    if due >= 0 then due = math.max(0, due - t) end
    local reply = {id, body, meta.p, attempt, due}
    for _, last in ipairs(last_ids()) do reply[#reply + 1] = last end
    return reply
end
local function nothing()
    return answer('', {p = ''}, 0)
end
if redis.call('EXISTS', base .. 'stopped') == 1 then return nothing() end
for _, priority in ipairs(PRIORITIES) do
    local stream = base .. 's:' .. priority
    if redis.call('EXISTS', stream) == 1 then
        -- A stream made by someone else has no group yet: our reads need one.
        redis.pcall('XGROUP', 'CREATE', stream, 'workers', '0')
        for _ = 1, 20 do
            local p = redis.call('XPENDING', stream, 'workers', 'IDLE', lease, '-', '+', 1)
            if #p == 0 then break end
            local sid, owner, deliveries = p[1][1], p[1][2], tonumber(p[1][4])
            local claimed = redis.call('XCLAIM', stream, 'workers', consumer, lease, sid)
            redis.call('XGROUP', 'DELCONSUMER', stream, 'workers', owner)
            local entry = claimed[1]
            local id = entry and entry[2] and entry[2][2]
            local meta = id and get_meta(id)
            if not meta or meta.s ~= sid then
                -- A deleted entry, or one that is not ours: drop it from the pending list.
                redis.call('XACK', stream, 'workers', sid)
                redis.call('XDEL', stream, sid)
            else
                count('redelivered', t)
                local attempt = meta.a + deliveries + 1
                if attempt > max_attempts then
                    redis.call('XACK', stream, 'workers', sid)
                    redis.call('XDEL', stream, sid)
                    redis.call('XGROUP', 'DELCONSUMER', stream, 'workers', consumer)
                    meta.a = attempt - 1
                    bury(id, meta, 'lease expired on each of ' .. meta.a .. ' attempts', t)
                else
                    return answer(id, meta, attempt)
                end
            end
        end
        for _ = 1, 20 do
            local read = redis.call(
                'XREADGROUP', 'GROUP', 'workers', consumer, 'COUNT', 1, 'STREAMS', stream, '>')
            if not read or #read[1][2] == 0 then break end
            local sid, fields = read[1][2][1][1], read[1][2][1][2]
            local id = fields[2]
            local meta = id and get_meta(id)
            if meta and meta.s == sid then
                return answer(id, meta, meta.a + 1)
            end
            redis.call('XACK', stream, 'workers', sid)
            redis.call('XDEL', stream, sid)
        end
        redis.call('XGROUP', 'DELCONSUMER', stream, 'workers', consumer)
    end
end
return nothing()
"""
)

# ARGV: action (done, fail, release, touch), id, lease token, reason, max attempts,
# backoff ms, maximum backoff ms.  Returns {status, detail}: status 'ok', 'retry' (detail:
# due ms), 'dead', or an error: 'unknown', 'not-taken', 'moved'.
FINISH = (
    _COMMON
    + """
local action, id, lease = ARGV[1], ARGV[2], ARGV[3]
local h, err = held(id, lease)
if not h then return {err, ''} end
local meta, stream, t = h.meta, h.stream, now()
if action == 'touch' then
    redis.call('XCLAIM', stream, 'workers', lease, 0, meta.s, 'JUSTID')
    return {'ok', ''}
end
redis.call('XACK', stream, 'workers', meta.s)
redis.call('XDEL', stream, meta.s)
redis.call('XGROUP', 'DELCONSUMER', stream, 'workers', lease)
if action == 'done' then
    forget(id, meta)
    count('done', t)
    return {'ok', ''}
end
if action == 'release' then
    add(id, meta)
    return {'ok', ''}
end
local attempts = meta.a + h.deliveries
meta.a = attempts
meta.e = ARGV[4]
count('failed', t)
if attempts >= tonumber(ARGV[5]) then
    bury(id, meta, ARGV[4], t)
    return {'dead', ''}
end
local wait = math.min(tonumber(ARGV[6]) * 2 ^ (attempts - 1), tonumber(ARGV[7]))
meta.s = ''
put_meta(id, meta)
redis.call('ZADD', base .. 'delayed', t + wait, id)
signal()
return {'retry', tostring(t + wait)}
"""
)

# ARGV: id.  Returns {state, priority, attempts, error, body, created ms} or {} if unknown;
# state is waiting, taken, delayed or dead.
STATUS = (
    _COMMON
    + """
local id = ARGV[1]
local meta = get_meta(id)
if not meta then return {} end
local state = 'waiting'
if redis.call('ZSCORE', base .. 'dead', id) then
    state = 'dead'
elseif redis.call('ZSCORE', base .. 'delayed', id) then
    state = 'delayed'
elseif meta.s ~= '' then
    local p = redis.call('XPENDING', base .. 's:' .. meta.p, 'workers', meta.s, meta.s, 1)
    if #p > 0 then state = 'taken' end
end
local body = redis.call('HGET', base .. 'body', id) or 'null'
return {state, meta.p, tostring(meta.a), meta.e or '', body, tostring(meta.c)}
"""
)

# ARGV: id.  Moves a dead job back to its stream with its attempts reset; 0 if not dead.
DEAD_RETRY = (
    _COMMON
    + """
local id = ARGV[1]
if redis.call('ZREM', base .. 'dead', id) == 0 then return 0 end
local meta = get_meta(id)
if not meta then return 0 end
meta.a = 0
meta.e = ''
if meta.u ~= '' and redis.call('SET', base .. 'u:' .. meta.u, id, 'NX') == false then
    meta.u = ''
end
add(id, meta)
return 1
"""
)

# ARGV: id.  Deletes a dead job for good; 0 if it is not dead.
DEAD_DELETE = (
    _COMMON
    + """
local id = ARGV[1]
if redis.call('ZREM', base .. 'dead', id) == 0 then return 0 end
local meta = get_meta(id) or {}
forget(id, meta)
return 1
"""
)

# No ARGV.  Returns the queue's figures: {entries, pending, delayed, dead, stopped, oldest
# entry ms or -1, now ms, waiting takers, working leases, counts (flat field/value list),
# rates (enqueued, done, failed over the last full 10 s)}.
INFO = (
    _COMMON
    + """
local t = now()
local entries, pending, working, oldest = 0, 0, 0, -1
for _, priority in ipairs(PRIORITIES) do
    local stream = base .. 's:' .. priority
    if redis.call('EXISTS', stream) == 1 then
        entries = entries + redis.call('XLEN', stream)
        local summary = redis.pcall('XPENDING', stream, 'workers')
        if not summary['err'] then pending = pending + summary[1] end
        local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
        if #first > 0 then
            local ms = tonumber(string.match(first[1][1], '^(%d+)'))
            if oldest < 0 or ms < oldest then oldest = ms end
        end
    end
end
local waiting = 0
local takers = redis.call('HGETALL', base .. 'waiting')
for i = 1, #takers, 2 do
    local n, expires = string.match(takers[i + 1], '^(%d+):(%d+)$')
    if n and tonumber(expires) > t then
        waiting = waiting + tonumber(n)
    else
        redis.call('HDEL', base .. 'waiting', takers[i])
    end
end
local previous = math.floor(t / 10000) - 1
local rates = {}
for _, name in ipairs({'enqueued', 'done', 'failed'}) do
    rates[#rates + 1] = tonumber(redis.call('GET', base .. 'rate:' .. name .. ':' .. previous) or 0)
end
return {
    entries - pending, pending, redis.call('ZCARD', base .. 'delayed'),
    redis.call('ZCARD', base .. 'dead'), redis.call('EXISTS', base .. 'stopped'), oldest, t,
    waiting, redis.call('HGETALL', base .. 'counts'), rates
}
"""
)

# ARGV: this process's name, its held takes.  Registers them for 3 s (INFO counts them).
WAITING = """
local t = redis.call('TIME')
local expires = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) + 3000
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ':' .. expires)
"""
