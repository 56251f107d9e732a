package bench

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var (
	tablesOut = flag.String("tables", "", "append the quality tables, as markdown, to this file (bench/run.sh sets it)")
	long      = flag.Bool("long", false, "also run the long simulations, such as TestSWIMTable (bench/run.sh sets it)")
)

// writeTable logs a markdown table with a title and, with -tables, appends
// it to that file for RESULTS.md.
func writeTable(t *testing.T, title string, header []string, rows [][]string) {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "\n### %s\n\n| %s |\n|%s\n", title, strings.Join(header, " | "), strings.Repeat("---|", len(header)))
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s |\n", strings.Join(r, " | "))
	}
	t.Log(b.String())
	appendTables(t, b.String())
}

// appendTables appends text to the -tables file, if any.
func appendTables(t *testing.T, text string) {
	t.Helper()
	if *tablesOut == "" {
		return
	}
	f, err := os.OpenFile(*tablesOut, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(text); err != nil {
		t.Fatal(err)
	}
}
