//go:build race

package worker

// raceEnabled: under -race miniredis runs its Lua scripts an order of
// magnitude slower.
const raceEnabled = true
