package bench

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/distkit/distkit/detector/swim"
)

// swimKey is the cluster key of the encrypted runs, and swimLabel their
// cluster label (both implementations authenticate it with every packet).
var swimKey = bytes.Repeat([]byte{0x5a}, swim.KeySize)

const swimLabel = "bench"

// startDistkitKeyed starts n distkit SWIM nodes that seal every packet
// with AES-256-GCM under swimKey.
func startDistkitKeyed(t *testing.T, nw *swimNet, n int) *swimCluster {
	ring, err := swim.NewKeyring(swimKey)
	if err != nil {
		t.Fatal(err)
	}
	return startDistkit(t, nw, n, swim.Config{Keyring: ring, Label: swimLabel})
}

// startMemberlistKeyed starts n memberlist nodes whose keyring holds
// swimKey (SecretKey: AES-256-GCM on packets and streams).
func startMemberlistKeyed(t *testing.T, nw *swimNet, n int) *swimCluster {
	return startMemberlistWith(t, nw, n, func(cfg *memberlist.Config) {
		cfg.SecretKey, cfg.Label = swimKey, swimLabel
	})
}

// TestSWIMKeyringTable compares distkit's SWIM and memberlist, each
// without and with encryption (a keyring and a cluster label), on
// swimTraffic's healthy clusters of 16, 64 and 256 members (bytes and
// packets per member per period; memberlist's bytes include its
// push-pull streams) and on swimScenario's loss scenario (false dead
// verdicts, then the time to declare a crashed member dead). It runs only
// with -long; it asserts that encrypted distkit converges and that every
// live member detects every crash, and reports the rest.
func TestSWIMKeyringTable(t *testing.T) {
	if !*long || raceEnabled {
		t.Skip("minutes of CPU: runs with -long, without -race (bench/run.sh passes -long)")
	}
	impls := []swimImpl{
		{"distkit", startDistkitSWIM}, {"distkit, keyring", startDistkitKeyed},
		{"memberlist", startMemberlist}, {"memberlist, keyring", startMemberlistKeyed},
	}
	var rows [][]string
	for _, n := range []int{16, 64, 256} {
		rows = append(rows, swimTrafficRow(t, impls, n, fmt.Sprintf("bytes (packets) per member per period, %d members", n), "distkit, keyring",
			func(l swimLoad) string { return fmt.Sprintf("%.0f (%.2f)", l.bytes, l.packets) }))
	}
	fp := []string{swimScenarios0}
	det := []string{"crashed node declared dead, mean of 3 crashes after the loss scenario: first / last observer (crashes detected by all)"}
	for _, impl := range impls {
		h, a, first, last, detected := swimScenario(t, impl, swimLossy)
		fp = append(fp, fmt.Sprintf("%d / %d", h, a))
		det = append(det, fmt.Sprintf("%v / %v (%d of %d)", first.Round(time.Millisecond), last.Round(time.Millisecond), detected, len(swimVictims)))
		if impl.name == "distkit, keyring" && detected < len(swimVictims) {
			t.Errorf("%s: %d of %d crashes detected by every live node within a minute", impl.name, detected, len(swimVictims))
		}
	}
	rows = append(rows, fp, det)
	header := []string{"measure"}
	for _, impl := range impls {
		header = append(header, impl.name)
	}
	writeTable(t, "SWIM vs memberlist, encrypted (virtual time, default LAN configs, delays 10-50 ms)", header, rows)
}
