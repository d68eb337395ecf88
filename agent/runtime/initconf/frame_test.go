package initconf

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
)

func TestConfigFrameRoundTrip(t *testing.T) {
	for _, cfg := range []*Config{
		{Rootfs: "/r", Process: Process{Args: []string{"true"}}, Caps: []uint{0, 1}},
		{Rootfs: "/r", Process: Process{Args: []string{"sh"}}, Payload: true,
			Seccomp: &Seccomp{Flags: 2, Code: bytes.Repeat([]byte{1, 2, 3, 4, 5, 6, 7, 8}, 900)}},
	} {
		frame, err := EncodeConfig(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := FrameSize(frame[:FrameHeader]); err != nil || n != len(frame) {
			t.Fatalf("FrameSize = %d, %v; want %d", n, err, len(frame))
		}
		got, err := DecodeConfig(frame)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, cfg) {
			t.Errorf("round trip = %+v, want %+v", got, cfg)
		}
	}
}

func TestConfigFrameRefusesBadFrames(t *testing.T) {
	good, _ := EncodeConfig(&Config{Rootfs: "/r"})
	huge := make([]byte, FrameHeader)
	binary.LittleEndian.PutUint32(huge, maxFrame)
	code := append(append([]byte{}, good...), 1, 2, 3, 4, 5, 6, 7, 8)
	binary.LittleEndian.PutUint32(code[4:], 8) // a program, but no seccomp flags in the JSON
	for name, frame := range map[string][]byte{
		"short header":       good[:4],
		"truncated":          good[:len(good)-1],
		"over the limit":     huge,
		"program, no header": code,
	} {
		if _, err := DecodeConfig(frame); err == nil {
			t.Errorf("%s: DecodeConfig accepted it", name)
		}
	}
}
