//go:build race

package main

// raceEnabled: under the race detector sync.Pool drops what it is given at random, so
// allocation counts vary from run to run.
const raceEnabled = true
