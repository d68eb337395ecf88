// Package stack turns Compose files into berth objects and brings a
// cluster's stack in line with them.
//
// Reading (Load) uses compose-go for everything the Compose specification
// defines: variables from the environment and `.env`, env_file, extends,
// several files merged in order, profiles. Translation maps each key berth's
// specs can express and names every other key in a warning ("service "web":
// ignoring unsupported option: build"); an invalid file fails with its file,
// line and key. Deploy and Remove work through a small API interface (the
// Control RPCs a client needs), so this package speaks no gRPC itself.
//
// Every object a stack creates is named STACK_NAME and labelled
// com.docker.stack.namespace=STACK, the label Docker uses; objects declared
// `external: true` are only referred to, never created or removed.
package stack
