"""The Lua scripts of the Redis broker: each state change of a task is one script.

Redis runs a script alone, so each is atomic; a batch claim is one call. Keys
(``p`` is the site's prefix, ``jobs:<site>:``):

* ``p t:<id>``: hash, one task (``task_id``, ``payload``, ``queue``, ``score``,
  ``attempt``, ``max_attempts``, ``unique``, ``func``, ``job_name``, ``name``,
  ``timeout``, ``created``; while claimed also ``owner``, ``claimed``);
* ``p ids``: hash, django-q2 task id -> ``<id>``; ``p seq``: the last ``<id>``;
* ``p q:<queue>:ready``: sorted set, ready tasks by ``score`` (priority, then
  enqueue order); ``p q:<queue>:delayed``: sorted set, retries by due time;
  ``p q:<queue>:wake``: a short list an idle pusher blocks on; ``p q:<queue>:prio``:
  the priorities used (for the oldest-task figure); ``p queues``: queue names;
* ``p n:<node>``: hash, what a worker node holds (``<id>`` -> attempt);
  ``p dead:<node>``: the node may claim nothing (set when it is declared dead or stops);
* ``p unique``: hash, unique key -> ``<id>`` of the task holding it.

The scripts build task keys from ``p`` (one Redis, not a Redis Cluster).
"""

from __future__ import annotations

# Spacing of priorities in a ready score: (-priority) * 2**36 + id keeps every
# score an exact integer in a double for priorities within SmallIntegerField.
SCORE_SPACING = 2**36

_LIB = (
    """
local p = ARGV[1]
local function forget(id)
  local key = p .. 't:' .. id
  local fields = redis.call('HMGET', key, 'task_id', 'unique')
  if fields[2] and fields[2] ~= '' and redis.call('HGET', p .. 'unique', fields[2]) == id then
    redis.call('HDEL', p .. 'unique', fields[2])
  end
  if fields[1] and redis.call('HGET', p .. 'ids', fields[1]) == id then
    redis.call('HDEL', p .. 'ids', fields[1])
  end
  redis.call('DEL', key)
end
local function wake(queue)
  local key = p .. 'q:' .. queue .. ':wake'
  redis.call('RPUSH', key, 1)
  redis.call('LTRIM', key, 0, 63)
end
local function make_ready(id)
  local key = p .. 't:' .. id
  local queue = redis.call('HGET', key, 'queue')
  redis.call('HDEL', key, 'owner', 'claimed')
  redis.call('ZADD', p .. 'q:' .. queue .. ':ready', redis.call('HGET', key, 'score'), id)
  wake(queue)
end
-- ARGV from 'first': queue, task_id, payload, priority, unique, max_attempts,
-- func, job_name, name, timeout, created, attempt. Returns {created?, task id}.
local function create(first)
  local queue, task_id = ARGV[first], ARGV[first + 1]
  local priority, unique = ARGV[first + 3], ARGV[first + 4]
  if redis.call('HEXISTS', p .. 'ids', task_id) == 1 then return {0, task_id} end
  if unique ~= '' then
    local holder = redis.call('HGET', p .. 'unique', unique)
    if holder then
      local other = redis.call('HGET', p .. 't:' .. holder, 'task_id')
      if other then return {0, other} end
    end
  end
  local id = redis.call('INCR', p .. 'seq')
  local score = -tonumber(priority) * """
    + str(SCORE_SPACING)
    + """ + id
  redis.call('HSET', p .. 't:' .. id, 'task_id', task_id, 'payload', ARGV[first + 2],
    'queue', queue, 'score', string.format('%d', score), 'priority', priority,
    'unique', unique, 'max_attempts', ARGV[first + 5], 'func', ARGV[first + 6],
    'job_name', ARGV[first + 7], 'name', ARGV[first + 8], 'timeout', ARGV[first + 9],
    'created', ARGV[first + 10], 'attempt', ARGV[first + 11])
  redis.call('HSET', p .. 'ids', task_id, id)
  if unique ~= '' then redis.call('HSET', p .. 'unique', unique, id) end
  redis.call('ZADD', p .. 'q:' .. queue .. ':ready', score, id)
  redis.call('SADD', p .. 'q:' .. queue .. ':prio', priority)
  redis.call('SADD', p .. 'queues', queue)
  wake(queue)
  return {1, task_id}
end
"""
)

# ARGV: p, then create()'s arguments.
ENQUEUE = _LIB + "return create(2)"

# ARGV: p, queue, node, now, bulk. Returns -1 if the node may not claim, else
# {{id, attempt, payload}, ...} in claim order. Due retries join the ready set first.
CLAIM = (
    _LIB
    + """
local queue, node, now, bulk = ARGV[2], ARGV[3], ARGV[4], tonumber(ARGV[5])
if redis.call('EXISTS', p .. 'dead:' .. node) == 1 then return -1 end
local ready, delayed = p .. 'q:' .. queue .. ':ready', p .. 'q:' .. queue .. ':delayed'
for _, id in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 1000)) do
  local score = redis.call('HGET', p .. 't:' .. id, 'score')
  if score then redis.call('ZADD', ready, score, id) end
  redis.call('ZREM', delayed, id)
end
local out = {}
local popped = redis.call('ZPOPMIN', ready, bulk)
for i = 1, #popped, 2 do
  local id = popped[i]
  local key = p .. 't:' .. id
  local payload = redis.call('HGET', key, 'payload')
  if payload then
    local attempt = redis.call('HINCRBY', key, 'attempt', 1)
    redis.call('HSET', key, 'owner', node, 'claimed', now)
    redis.call('HSET', p .. 'n:' .. node, id, attempt)
    out[#out + 1] = {tonumber(id), attempt, payload}
  end
end
return out
"""
)

# ARGV: p, node, id, attempt, ... Succeeded runs: gone, if the node still holds
# that attempt. Returns a 1/0 per pair.
ACK = (
    _LIB
    + """
local held = p .. 'n:' .. ARGV[2]
local out = {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', held, ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', held, ARGV[i])
    forget(ARGV[i])
    out[#out + 1] = 1
  else
    out[#out + 1] = 0
  end
end
return out
"""
)

# ARGV: p, node, id, attempt, retry_at ('' = dead). A failed run of a task the node
# still holds: to the delayed set, or gone. Returns the task's fields, or nil.
FAIL = (
    _LIB
    + """
local held, id = p .. 'n:' .. ARGV[2], ARGV[3]
if redis.call('HGET', held, id) ~= ARGV[4] then return nil end
redis.call('HDEL', held, id)
local key = p .. 't:' .. id
local fields = redis.call('HGETALL', key)
if ARGV[5] == '' then
  forget(id)
else
  redis.call('HDEL', key, 'owner', 'claimed')
  redis.call('ZADD', p .. 'q:' .. redis.call('HGET', key, 'queue') .. ':delayed', ARGV[5], id)
end
return fields
"""
)

# ARGV: p, node, mode, id, attempt, ... (no pairs: everything the node holds).
# mode 'dead': the node is dead or stopped; it may claim nothing from now on.
# mode 'lost': its worker process died. Both: ready again, or gone at the last
# attempt; returns {{id, attempt, last (0/1), fields}, ...}.
# mode 'back': never started: ready again with the attempt undone; returns the count.
RELEASE = (
    _LIB
    + """
local node, mode = ARGV[2], ARGV[3]
local held = p .. 'n:' .. node
if mode == 'dead' then redis.call('SET', p .. 'dead:' .. node, 1, 'EX', 604800) end
local chosen = {}
if #ARGV > 3 then
  for i = 4, #ARGV, 2 do
    if redis.call('HGET', held, ARGV[i]) == ARGV[i + 1] then
      chosen[#chosen + 1] = {ARGV[i], ARGV[i + 1]}
    end
  end
else
  local all = redis.call('HGETALL', held)
  for i = 1, #all, 2 do chosen[#chosen + 1] = {all[i], all[i + 1]} end
end
local out, count = {}, 0
for _, pair in ipairs(chosen) do
  local id, attempt = pair[1], pair[2]
  redis.call('HDEL', held, id)
  local key = p .. 't:' .. id
  if redis.call('EXISTS', key) == 1 then
    count = count + 1
    if mode == 'back' then
      redis.call('HINCRBY', key, 'attempt', -1)
      make_ready(id)
    else
      local max = tonumber(redis.call('HGET', key, 'max_attempts')) or 0
      local last = max > 0 and tonumber(attempt) >= max
      local fields = redis.call('HGETALL', key)
      if last then forget(id) else make_ready(id) end
      out[#out + 1] = {id, attempt, last and 1 or 0, fields}
    end
  end
end
if mode == 'back' then return count end
return out
"""
)

# ARGV: p, task_id, max_attempts, then create()'s arguments (from the record).
# An operator retries a failed task: a waiting retry runs now, a dead task (no
# longer in Redis) is created again. Returns 1, or 0 while the task is running.
REQUEUE = (
    _LIB
    + """
local id = redis.call('HGET', p .. 'ids', ARGV[2])
if not id then return create(4)[1] end
local key = p .. 't:' .. id
local queue = redis.call('HGET', key, 'queue')
if redis.call('HEXISTS', key, 'owner') == 1 then return 0 end
redis.call('HSET', key, 'max_attempts', ARGV[3])
redis.call('ZREM', p .. 'q:' .. queue .. ':delayed', id)
make_ready(id)
return 1
"""
)

# ARGV: p, task_id. An operator deletes a task: gone unless it is running.
# Returns 1 (gone, or only a record in the database), 0 (running).
REMOVE = (
    _LIB
    + """
local id = redis.call('HGET', p .. 'ids', ARGV[2])
if not id then return 1 end
local key = p .. 't:' .. id
if redis.call('HEXISTS', key, 'owner') == 1 then return 0 end
local queue = redis.call('HGET', key, 'queue')
redis.call('ZREM', p .. 'q:' .. queue .. ':ready', id)
redis.call('ZREM', p .. 'q:' .. queue .. ':delayed', id)
forget(id)
return 1
"""
)

# ARGV: p, queue. Deletes the waiting (ready and delayed) tasks; returns how many.
PURGE = (
    _LIB
    + """
local count = 0
for _, name in ipairs({'ready', 'delayed'}) do
  local set = p .. 'q:' .. ARGV[2] .. ':' .. name
  for _, id in ipairs(redis.call('ZRANGE', set, 0, -1)) do
    forget(id)
    count = count + 1
  end
  redis.call('DEL', set)
end
return count
"""
)
