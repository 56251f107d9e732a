-- Complete or Release: KEYS[1] the record.
-- ARGV[1] token, ARGV[2] now (ms) or "" for the server's clock,
-- ARGV[3] "complete" or "release", ARGV[4] response, ARGV[5] retain (ms).
-- Returns 1 if the live in-progress claim under the token was completed
-- or released, 0 if there is none.
local now = tonumber(ARGV[2])
if not now then
	local t = redis.call('TIME')
	now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local r = redis.call('HMGET', KEYS[1], 'done', 'token', 'deadline')
if not r[3] or tonumber(r[3]) <= now or r[1] ~= '0' or r[2] ~= ARGV[1] then
	return 0
end
if ARGV[3] == 'release' then
	redis.call('DEL', KEYS[1])
	return 1
end
redis.call('HSET', KEYS[1], 'done', '1', 'resp', ARGV[4],
	'deadline', string.format('%.0f', now + tonumber(ARGV[5])))
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
