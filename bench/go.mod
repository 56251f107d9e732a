module github.com/distkit/distkit/bench

go 1.26.0

require (
	github.com/cespare/xxhash/v2 v2.3.0
	github.com/distkit/distkit v0.0.0
	github.com/transparency-dev/merkle v0.0.2
)

require (
	github.com/vmihailenco/msgpack/v5 v5.4.1 // indirect
	github.com/vmihailenco/tagparser/v2 v2.0.0 // indirect
)

replace github.com/distkit/distkit => ../
