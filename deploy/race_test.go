//go:build race

package deploy

const raceOn = true
