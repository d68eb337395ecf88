//go:build !amd64

package main

// otherABIs has nothing to call where the CPU runs one ABI.
func otherABIs(report func(string, error)) {}
