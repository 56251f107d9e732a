-- Claim: KEYS[1] the record, KEYS[2] the token counter.
-- ARGV[1] fingerprint, ARGV[2] lock (ms), ARGV[3] now (ms) or "" for the
-- server's clock.
-- Returns {token} for a new claim, or {0, fp, done, token, deadline,
-- response} for the live record.
local now = tonumber(ARGV[3])
if not now then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local r = redis.call('HMGET', KEYS[1], 'fp', 'done', 'token', 'deadline', 'resp')
if r[4] and tonumber(r[4]) > now then
	return {0, r[1], r[2], r[3], r[4], r[5] or ''}
end
local token = redis.call('INCR', KEYS[2])
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'fp', ARGV[1], 'done', '0',
	'token', string.format('%.0f', token),
	'deadline', string.format('%.0f', now + tonumber(ARGV[2])))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return {token}
