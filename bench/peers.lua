-- wrk script for bench/peers.py. Usage: wrk ... -s bench/peers.lua URL -- BODIES_FILE SEED
-- Every request POSTs a JSON body picked at random from BODIES_FILE (one body per line), so
-- the servers see a mix of lengths rather than one cached shape. done() prints one line,
-- "PEERS_JSON {...}", that peers.py parses (latencies in microseconds).

local bodies = {}
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
  math.randomseed(tonumber(args[2]))
end

function request()
  return wrk.format("POST", nil, headers, bodies[math.random(#bodies)])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'PEERS_JSON {"requests": %d, "duration_us": %d, "non_2xx": %d, "connect_errors": %d, ' ..
    '"read_errors": %d, "write_errors": %d, "timeouts": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
