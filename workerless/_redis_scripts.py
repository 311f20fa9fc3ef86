"""The Lua scripts of RedisStore: each one round trip, atomic, and tolerant of foreign data.

A script that meets a key of the wrong type (someone else's data under our prefix) treats it
as absent or foreign instead of failing; any other error (a missing permission) is raised.
"""

from __future__ import annotations

__all__ = ["ACQUIRE", "GET", "INVALIDATE", "RELEASE", "RENEW", "SET_IF_EPOCH"]

# Run a command that may meet someone else's data: a WRONGTYPE answer (or, for INCR, a value
# that is not an integer) gives (nil, true); any other error (NOPERM...) is raised as is.
_TOLERANT = """
local function tolerant(...)
    local reply = redis.pcall(...)
    if type(reply) == 'table' and reply['err'] then
        local e = reply['err']
        if string.find(e, '^WRONGTYPE') or string.find(e, 'not an integer') then
            return nil, true
        end
        error(reply)
    end
    return reply, false
end
"""
# The value if it is a string no longer than ARGV[1] bytes, and its ttl, in one round trip;
# a longer value is never transferred.  Status: 0 missing, 1 value, 2 too long, 3 wrong type.
GET = (
    _TOLERANT
    + """
local n, bad = tolerant('STRLEN', KEYS[1])
if bad then return {3} end
local pttl = redis.call('PTTL', KEYS[1])
if pttl == -2 then return {0} end
if n > tonumber(ARGV[1]) then return {2, pttl, n} end
return {1, pttl, redis.call('GET', KEYS[1])}
"""
)
# Take a free lease; renew our own; break a foreign one (not a 32-hex token, no expiry, or
# longer than MAX_LEASE).  Status: 0 held by another, 1 taken, 2 taken from a foreign holder.
ACQUIRE = (
    _TOLERANT
    + """
local held, bad = tolerant('GET', KEYS[1])
if held == false then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return {1, ARGV[1], ARGV[2]}
end
if held == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return {1, ARGV[1], ARGV[2]}
end
local pttl = redis.call('PTTL', KEYS[1])
if not bad and string.len(held) == 32 and not string.find(held, '[^0-9a-f]')
        and pttl > 0 and pttl <= tonumber(ARGV[3]) then
    return {0, held, pttl}
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if bad then held = '(not a string)' end
return {2, string.sub(held, 1, 40), ARGV[2]}
"""
)
RENEW = (
    _TOLERANT
    + """
if tolerant('GET', KEYS[1]) == ARGV[1] then
    return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
)
# Store only if no invalidation happened since the computation read the epoch; a corrupt
# epoch never equals one that was read, so nothing is stored until it is repaired.
SET_IF_EPOCH = (
    _TOLERANT
    + """
local epoch = tolerant('GET', KEYS[2])
if epoch == false then epoch = '0' end
if epoch ~= ARGV[3] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
)
RELEASE = (
    _TOLERANT
    + """
local released = 0
if tolerant('GET', KEYS[1]) == ARGV[1] then released = redis.call('DEL', KEYS[1]) end
-- With a channel and a message: announce the end in the same round trip.
if ARGV[3] then redis.call('PUBLISH', ARGV[2], ARGV[3]) end
return released
"""
)
# Increase the epoch (a corrupt one is replaced by ARGV[1], the time in ms), then unlink the
# value key if one is given; return how many keys went.
INVALIDATE = (
    _TOLERANT
    + """
local epoch, bad = tolerant('INCR', KEYS[1])
if bad then
    redis.call('SET', KEYS[1], ARGV[1])
    epoch = -1
end
local removed = 0
if KEYS[2] then removed = redis.call('UNLINK', KEYS[2]) end
return {removed, epoch}
"""
)
