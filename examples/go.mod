module github.com/distkit/distkit/examples

go 1.26.0

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/distkit/distkit v0.0.0
	github.com/vmihailenco/msgpack/v5 v5.4.1
	go.etcd.io/bbolt v1.5.0
)

require (
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
	golang.org/x/sync v0.25.0 // indirect
	golang.org/x/sys v0.45.0 // indirect
)

replace github.com/distkit/distkit => ../
