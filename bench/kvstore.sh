#!/usr/bin/env bash
# kvstore.sh runs the same load (examples/cmd/kvload) against a 3-node
# kvnode cluster (N=3, R=2, W=2, fsync on), the same with its replica RPCs
# over HTTP rather than multiplexed (-rpc-mux=false), a 3-node etcd cluster (etcd
# from Debian's etcd-server, its defaults, through its v3 JSON gateway)
# and a 1-node kvnode (N=R=W=1), one after the other on loopback, and
# writes the table and chart of throughput and latency to kvstore.md and
# kvstore.svg, and into RESULTS.md between its kvstore markers.
#
#   bench/kvstore.sh                       # 16 clients, 50% reads, 100-byte values, 100k keys, 8 s
#   CLIENTS=32 DURATION=4s bench/kvstore.sh
#
# Environment: CLIENTS, READS, VALUE, KEYS, DURATION (kvload's flags),
# PORT (first of the 18 loopback ports it uses, default 27000), RMW (1:
# read-modify-write instead of blind writes), PROFILE (a directory: the
# 3-node kvnode run serves -pprof on node n1, and its CPU profile and
# allocation profile during the load are saved there as cpu.pprof and
# allocs.pprof). It installs etcd-server
# with apt-get when etcd is absent and it may (root), and otherwise
# skips the etcd run with a message. Every process it starts is stopped
# when it exits, however it exits.
set -euo pipefail

{
cd "$(dirname "$0")"
CLIENTS=${CLIENTS:-16}
READS=${READS:-0.5}
VALUE=${VALUE:-100}
KEYS=${KEYS:-100000}
DURATION=${DURATION:-8s}
PORT=${PORT:-27000}
RMW=${RMW:-0}

work=$(mktemp -d /var/tmp/kvstore.XXXXXX)
pids=() # the stores' processes, and kvload's while it runs

# stop kills every process started so far and waits for it. The stores'
# data is thrown away, so they are killed outright (a kvnode sent
# SIGTERM would first try to hand its keys over to the others).
stop() {
	local p
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
trap 'stop; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# ready waits up to 30 s for a URL to answer 2xx; $2 is curl's extra
# arguments.
ready() {
	local url=$1
	shift
	for _ in $(seq 300); do
		if curl -fsS -m 1 -o /dev/null "$@" "$url" 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "kvstore.sh: $url did not answer within 30 s" >&2
	return 1
}

for p in $(seq "$PORT" $((PORT + 17))); do
	if ss -Htln "sport = :$p" | grep -q .; then
		echo "kvstore.sh: port $p is in use; set PORT to a free range of 18 ports" >&2
		exit 1
	fi
done

echo "kvstore.sh: building kvnode and kvload" >&2
(cd .. && go build -o "$work/kvnode" ./examples/cmd/kvnode && go build -o "$work/kvload" ./examples/cmd/kvload)

load_flags=(-c "$CLIENTS" -reads "$READS" -value "$VALUE" -keys "$KEYS" -duration "$DURATION")
if [[ $RMW == 1 ]]; then load_flags+=(-rmw); fi

# kvload_run NAME TARGET ADDRS runs the load and keeps its output in
# $work/NAME.out, with the load average and CPU time of the store's
# processes (user+sys, from /proc) around it.
kvload_run() {
	local name=$1 target=$2 addrs=$3 before after
	before=$(cpu_ticks)
	echo "load average $(cut -d' ' -f1-3 /proc/loadavg)" >"$work/$name.out"
	# In the background, so that a signal stops the script at once (bash
	# runs traps only between foreground commands).
	"$work/kvload" -target "$target" -addrs "$addrs" "${load_flags[@]}" >>"$work/$name.out" &
	pids+=($!)
	wait "$!"
	unset 'pids[-1]'
	sed 1d "$work/$name.out" >&2
	after=$(cpu_ticks)
	echo "CPU $(((after - before) * 1000 / $(getconf CLK_TCK))) ms" >>"$work/$name.out"
}

# cpu_ticks sums the user and system ticks of the started processes.
cpu_ticks() {
	local p sum=0 t
	for p in "${pids[@]}"; do
		if t=$(awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null); then sum=$((sum + t)); fi
	done
	echo "$sum"
}

# kv_cluster N Q [FLAG...] starts N kvnodes with N=R=W chosen by Q ("3 2 2")
# and kvnode's further flags FLAG.
kv_cluster() {
	local nodes=$1 n=$2 r=$3 w=$4 extra=("${@:5}") i peers="" join="" addrs=""
	for i in $(seq "$nodes"); do
		peers+="${peers:+,}n$i=127.0.0.1:$((PORT + i))"
		if ((nodes > 1)); then join+="${join:+,}127.0.0.1:$((PORT + 10 + i))"; fi
		addrs+="${addrs:+,}127.0.0.1:$((PORT + i))"
	done
	for i in $(seq "$nodes"); do
		local prof=()
		if [[ -n ${PROFILE:-} && $nodes == 3 && $i == 1 ]]; then prof=(-pprof "127.0.0.1:$((PORT + 14))"); fi
		"$work/kvnode" "${prof[@]}" -id "n$i" -listen "127.0.0.1:$((PORT + i))" -gossip "127.0.0.1:$((PORT + 10 + i))" \
			-data "$work/kv$nodes-n$i" -peers "$peers" ${join:+-join "$join"} -n "$n" -r "$r" -w "$w" "${extra[@]}" \
			2>"$work/kv$nodes-n$i.log" &
		pids+=($!)
	done
	for i in $(seq "$nodes"); do ready "http://127.0.0.1:$((PORT + i))/readyz"; done
	kv_addrs=$addrs
}

# Three kvnodes, N=3 R=2 W=2.
kv_cluster 3 3 2 2
if [[ -n ${PROFILE:-} ]]; then
	mkdir -p "$PROFILE"
	secs=$(( ${DURATION%s} > 2 ? ${DURATION%s} - 1 : 1 ))
	curl -fsS -o "$PROFILE/cpu.pprof" "http://127.0.0.1:$((PORT + 14))/debug/pprof/profile?seconds=$secs" &
	prof_pid=$!
	curl -fsS -o "$PROFILE/allocs0.pprof" "http://127.0.0.1:$((PORT + 14))/debug/pprof/allocs"
fi
kvload_run kv3 kv "$kv_addrs"
if [[ -n ${PROFILE:-} ]]; then
	wait "$prof_pid" || echo "kvstore.sh: no CPU profile" >&2
	curl -fsS -o "$PROFILE/allocs.pprof" "http://127.0.0.1:$((PORT + 14))/debug/pprof/allocs"
fi
stop

# The same three, their replica RPCs over HTTP (-rpc-mux=false).
kv_cluster 3 3 2 2 -rpc-mux=false
kvload_run kvm kv "$kv_addrs"
stop

# One kvnode, N=R=W=1.
kv_cluster 1 1 1 1
kvload_run kv1 kv "$kv_addrs"
stop

# Three etcd members, with etcd's defaults.
if ! command -v etcd >/dev/null; then
	if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
		echo "kvstore.sh: installing etcd-server with apt-get" >&2
		apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >&2 || true
	fi
fi
have_etcd=0
if command -v etcd >/dev/null; then
	have_etcd=1
	cluster="" addrs=""
	for i in 1 2 3; do
		cluster+="${cluster:+,}e$i=http://127.0.0.1:$((PORT + 3 + i))"
		addrs+="${addrs:+,}127.0.0.1:$((PORT + 6 + i))"
	done
	for i in 1 2 3; do
		etcd --name "e$i" --data-dir "$work/etcd-e$i" \
			--listen-peer-urls "http://127.0.0.1:$((PORT + 3 + i))" --initial-advertise-peer-urls "http://127.0.0.1:$((PORT + 3 + i))" \
			--listen-client-urls "http://127.0.0.1:$((PORT + 6 + i))" --advertise-client-urls "http://127.0.0.1:$((PORT + 6 + i))" \
			--initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token kvstore-bench \
			2>"$work/etcd-e$i.log" &
		pids+=($!)
	done
	for i in 1 2 3; do ready "http://127.0.0.1:$((PORT + 6 + i))/health"; done
	kvload_run etcd etcd "$addrs"
	stop
	etcd_version=$(etcd --version | awk '/etcd Version/ { print $3 }')
else
	echo "kvstore.sh: etcd is not installed and cannot be (apt-get needs root): the etcd column is left out" >&2
fi

# field NAME KEY reads KEY=value from NAME's RESULT line.
field() { awk -v k="$2" '/^RESULT/ { for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == k) print kv[2] } }' "$work/$1.out"; }
loadavg() { awk '/^load average/ { print $3, $4, $5 }' "$work/$1.out"; }
cpu() { awk '/^CPU/ { print $2 }' "$work/$1.out"; }

runs=(kv3 kvm kv1)
if [[ $have_etcd == 1 ]]; then runs=(kv3 kvm etcd kv1); fi
declare -A label=([kv3]="kvnode, 3 nodes, N=3 R=2 W=2" [kvm]="kvnode, 3 nodes, -rpc-mux=false" [kv1]="kvnode, 1 node, N=R=W=1" [etcd]="etcd ${etcd_version:-}, 3 members")
mode="blind writes"
if [[ $RMW == 1 ]]; then mode="read-modify-write"; fi

{
	echo "## kvnode against etcd"
	echo
	echo "Generated by \`bench/kvstore.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'): $(nproc) CPUs, every store on loopback"
	echo "with fsync on, the same \`kvload\` against each, one after the other:"
	echo "$CLIENTS clients, $(awk -v r="$READS" 'BEGIN { print 100 * r }')% reads, $VALUE-byte values, $KEYS keys, $DURATION, $mode."
	echo "Load average is the machine's just before each run (it is shared); CPU"
	echo "is the user+system time of the store's processes during the run, and"
	echo "CPU per op that divided by the operations (the figure least moved by"
	echo "the machine's other load)."
	echo
	echo "| store | ops/s | p50 | p99 | p999 | errors | CPU | CPU per op | load average |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---|"
	for r in "${runs[@]}"; do
		per=$(awk -v c="$(cpu "$r")" -v n="$(field "$r" ops)" 'BEGIN { if (n > 0) printf "%.0f µs", c * 1000 / n; else print "–" }')
		echo "| ${label[$r]} | $(field "$r" ops_per_s) | $(field "$r" p50_ms) ms | $(field "$r" p99_ms) ms | $(field "$r" p999_ms) ms | $(field "$r" errors) | $(cpu "$r") ms | $per | $(loadavg "$r") |"
	done
	echo
	kv1=$(field kv1 ops_per_s)
	for r in kv3 kvm; do
		k=$(field "$r" ops_per_s)
		line="- ${label[$r]}: 3-node / 1-node throughput $(awk -v a="$k" -v b="$kv1" 'BEGIN { printf "%.2f", a / b }')"
		if [[ $have_etcd == 1 ]]; then
			line+="; against etcd (3 nodes each) $(awk -v a="$k" -v b="$(field etcd ops_per_s)" 'BEGIN { printf "%.2f", a / b }'),"
			line+=" p99 $(field "$r" p99_ms) ms against $(field etcd p99_ms) ms"
		fi
		echo "$line"
	done
	echo
	echo "![throughput and latency](kvstore.svg)"
} >kvstore.md

# The chart: throughput bars on the left, p50/p99/p999 bars on the right.
for r in "${runs[@]}"; do
	echo "$r|${label[$r]}|$(field "$r" ops_per_s)|$(field "$r" p50_ms)|$(field "$r" p99_ms)|$(field "$r" p999_ms)"
done | awk -F'|' '
	{ n++; id[n] = $1; name[n] = $2; ops[n] = $3; p[n, 1] = $4; p[n, 2] = $5; p[n, 3] = $6
	  if ($3 > maxops) maxops = $3
	  for (j = 4; j <= 6; j++) if ($j > maxlat) maxlat = $j }
	END {
		color["kv3"] = "#2b6cb0"; color["kvm"] = "#553c9a"; color["kv1"] = "#90cdf4"; color["etcd"] = "#dd6b20"
		lat = 40 + 80 * n; group = 40 * n + 30 # where the latency groups start, and their pitch
		W = lat + 3 * group + 20; H = 300; top = 40; base = 250; h = base - top
		printf "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" font-size=\"12\">\n", W, H + 20 * n
		printf "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		printf "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-weight=\"bold\">throughput (ops/s, higher is better)</text>\n", 20 + 40 * n
		printf "<text x=\"%d\" y=\"20\" text-anchor=\"middle\" font-weight=\"bold\">latency (ms, lower is better)</text>\n", lat + 1.5 * group
		for (i = 1; i <= n; i++) {
			x = 40 + (i - 1) * 80; bh = maxops > 0 ? ops[i] / maxops * h : 0
			printf "<rect x=\"%d\" y=\"%.1f\" width=\"60\" height=\"%.1f\" fill=\"%s\"/>\n", x, base - bh, bh, color[id[i]]
			printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\">%.0f</text>\n", x + 30, base - bh - 4, ops[i]
		}
		split("p50 p99 p999", q, " ")
		for (j = 1; j <= 3; j++) {
			gx = lat + (j - 1) * group
			printf "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n", gx + 20 * n, base + 16, q[j]
			for (i = 1; i <= n; i++) {
				x = gx + (i - 1) * 40; bh = maxlat > 0 ? p[i, j] / maxlat * h : 0
				printf "<rect x=\"%d\" y=\"%.1f\" width=\"34\" height=\"%.1f\" fill=\"%s\"/>\n", x, base - bh, bh, color[id[i]]
				printf "<text x=\"%d\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"10\">%s</text>\n", x + 17, base - bh - 4, p[i, j]
			}
		}
		printf "<line x1=\"20\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"black\"/>\n", base, W - 20, base
		for (i = 1; i <= n; i++) {
			y = base + 30 + (i - 1) * 20
			printf "<rect x=\"40\" y=\"%d\" width=\"12\" height=\"12\" fill=\"%s\"/><text x=\"58\" y=\"%d\">%s</text>\n", y, color[id[i]], y + 10, name[i]
		}
		print "</svg>"
	}' >kvstore.svg

# Splice the section into RESULTS.md (run.sh rewrites it whole and adds
# kvstore.md itself).
if [[ -f RESULTS.md ]]; then
	awk -v section=kvstore.md '
		function splice() {
			print "<!-- kvstore -->"
			while ((getline line < section) > 0) print line
			print "<!-- /kvstore -->"
			done = 1
		}
		/^<!-- kvstore -->$/ { splice(); skip = 1; next }
		/^<!-- \/kvstore -->$/ { skip = 0; next }
		!skip { print }
		END { if (!done) { print ""; splice() } }' RESULTS.md >"$work/RESULTS.md"
	cp "$work/RESULTS.md" RESULTS.md
fi
cat kvstore.md
echo "kvstore.sh: wrote $(pwd)/kvstore.md, kvstore.svg and RESULTS.md" >&2
exit
}
