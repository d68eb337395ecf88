package initconf

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// The agent sends the init its Config as one frame on FdSync:
//
//	[4] length of the JSON, [4] length of the seccomp program, JSON, program
//
// (lengths little-endian). The program travels raw: as base64 inside the
// JSON it was a third of the init's config decoding time.

// FrameHeader is the size of a config frame's header.
const FrameHeader = 8

// maxFrame bounds a frame the init accepts: far above any valid spec
// (the managers refuse specs over 512 KiB), far below what would hurt.
const maxFrame = 16 << 20

// EncodeConfig builds the frame carrying cfg.
func EncodeConfig(cfg *Config) ([]byte, error) {
	js, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode init config: %w", err)
	}
	var code []byte
	if cfg.Seccomp != nil {
		code = cfg.Seccomp.Code
	}
	frame := make([]byte, FrameHeader, FrameHeader+len(js)+len(code))
	binary.LittleEndian.PutUint32(frame, uint32(len(js)))
	binary.LittleEndian.PutUint32(frame[4:], uint32(len(code)))
	return append(append(frame, js...), code...), nil
}

// FrameSize returns the whole frame's size from its header.
func FrameSize(header []byte) (int, error) {
	if len(header) < FrameHeader {
		return 0, fmt.Errorf("config frame: short header (%d bytes)", len(header))
	}
	n := FrameHeader + int(binary.LittleEndian.Uint32(header)) + int(binary.LittleEndian.Uint32(header[4:]))
	if n > maxFrame {
		return 0, fmt.Errorf("config frame: %d bytes is over the %d limit", n, maxFrame)
	}
	return n, nil
}

// DecodeConfig reads a whole frame.
func DecodeConfig(frame []byte) (*Config, error) {
	n, err := FrameSize(frame)
	if err != nil {
		return nil, err
	}
	if len(frame) != n {
		return nil, fmt.Errorf("config frame: %d bytes, header says %d", len(frame), n)
	}
	jsLen := int(binary.LittleEndian.Uint32(frame))
	var cfg Config
	if err := json.Unmarshal(frame[FrameHeader:FrameHeader+jsLen], &cfg); err != nil {
		return nil, fmt.Errorf("decode init config: %w", err)
	}
	code := frame[FrameHeader+jsLen:]
	switch {
	case cfg.Seccomp != nil:
		cfg.Seccomp.Code = code
	case len(code) > 0:
		return nil, fmt.Errorf("config frame: a seccomp program without its flags")
	}
	return &cfg, nil
}
