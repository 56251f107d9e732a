module github.com/distkit/distkit/bench

go 1.26.0

require github.com/distkit/distkit v0.0.0

replace github.com/distkit/distkit => ../
