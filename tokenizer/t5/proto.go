package t5

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A minimal reader for the protobuf wire format, enough for sentencepiece's
// ModelProto.

type wireReader struct {
	b   []byte
	pos int
}

var errTruncated = errors.New("t5: truncated protobuf")

func (r *wireReader) done() bool { return r.pos >= len(r.b) }

func (r *wireReader) varint() (uint64, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if r.pos >= len(r.b) {
			return 0, errTruncated
		}
		c := r.b[r.pos]
		r.pos++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, nil
		}
	}
	return 0, errors.New("t5: protobuf varint too long")
}

// field reads one field header and its payload: for wire type 0 the value is
// in v, for 1 and 5 the raw bits, for 2 the bytes in data.
func (r *wireReader) field() (num int, wt int, v uint64, data []byte, err error) {
	key, err := r.varint()
	if err != nil {
		return 0, 0, 0, nil, err
	}
	num, wt = int(key>>3), int(key&7)
	switch wt {
	case 0:
		v, err = r.varint()
	case 1:
		if r.pos+8 > len(r.b) {
			return 0, 0, 0, nil, errTruncated
		}
		v = binary.LittleEndian.Uint64(r.b[r.pos:])
		r.pos += 8
	case 5:
		if r.pos+4 > len(r.b) {
			return 0, 0, 0, nil, errTruncated
		}
		v = uint64(binary.LittleEndian.Uint32(r.b[r.pos:]))
		r.pos += 4
	case 2:
		var n uint64
		n, err = r.varint()
		if err == nil {
			if n > uint64(len(r.b)-r.pos) {
				return 0, 0, 0, nil, errTruncated
			}
			data = r.b[r.pos : r.pos+int(n)]
			r.pos += int(n)
		}
	default:
		err = fmt.Errorf("t5: unsupported protobuf wire type %d", wt)
	}
	return num, wt, v, data, err
}

// Piece types of sentencepiece.
const (
	typeNormal      = 1
	typeUnknown     = 2
	typeControl     = 3
	typeUserDefined = 4
	typeUnused      = 5
	typeByte        = 6
)

type piece struct {
	text  string
	score float32
	typ   int
}

type normalizerSpec struct {
	name           string
	charsmap       []byte
	addDummyPrefix bool
	removeExtraWS  bool
	escapeWS       bool
}

type modelProto struct {
	pieces     []piece
	modelType  int // 1 unigram, 2 bpe, 3 word, 4 char
	norm       normalizerSpec
	treatWSSuf bool
	byteFB     bool
}

func parseModel(b []byte) (*modelProto, error) {
	m := &modelProto{
		modelType: 1,
		norm:      normalizerSpec{addDummyPrefix: true, removeExtraWS: true, escapeWS: true},
	}
	r := &wireReader{b: b}
	for !r.done() {
		num, wt, _, data, err := r.field()
		if err != nil {
			return nil, err
		}
		if wt != 2 {
			continue
		}
		switch num {
		case 1:
			p, err := parsePiece(data)
			if err != nil {
				return nil, err
			}
			m.pieces = append(m.pieces, p)
		case 2:
			if err := m.parseTrainer(data); err != nil {
				return nil, err
			}
		case 3:
			if err := parseNormalizer(data, &m.norm); err != nil {
				return nil, err
			}
		}
	}
	if len(m.pieces) == 0 {
		return nil, errors.New("t5: sentencepiece model has no pieces")
	}
	return m, nil
}

func parsePiece(b []byte) (piece, error) {
	p := piece{typ: typeNormal}
	r := &wireReader{b: b}
	for !r.done() {
		num, wt, v, data, err := r.field()
		if err != nil {
			return p, err
		}
		switch {
		case num == 1 && wt == 2:
			p.text = string(data)
		case num == 2 && wt == 5:
			p.score = math.Float32frombits(uint32(v))
		case num == 3 && wt == 0:
			p.typ = int(v)
		}
	}
	return p, nil
}

func (m *modelProto) parseTrainer(b []byte) error {
	r := &wireReader{b: b}
	for !r.done() {
		num, wt, v, _, err := r.field()
		if err != nil {
			return err
		}
		if wt != 0 {
			continue
		}
		switch num {
		case 3:
			m.modelType = int(v)
		case 24:
			m.treatWSSuf = v != 0
		case 35:
			m.byteFB = v != 0
		}
	}
	return nil
}

func parseNormalizer(b []byte, n *normalizerSpec) error {
	r := &wireReader{b: b}
	for !r.done() {
		num, wt, v, data, err := r.field()
		if err != nil {
			return err
		}
		switch {
		case num == 1 && wt == 2:
			n.name = string(data)
		case num == 2 && wt == 2:
			n.charsmap = data
		case num == 3 && wt == 0:
			n.addDummyPrefix = v != 0
		case num == 4 && wt == 0:
			n.removeExtraWS = v != 0
		case num == 5 && wt == 0:
			n.escapeWS = v != 0
		}
	}
	return nil
}
