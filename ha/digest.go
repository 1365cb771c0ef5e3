package ha

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"reflect"
	"sort"
	"strconv"

	"github.com/sluice-mesh/sluice/model"
)

// ConfigDigest is a short digest of what decides in cfg — rollouts, analysis templates,
// clusters, listeners' routes, the ControlPlane's minRequests — and not of where a
// replica binds or keeps files: listener, admin and xDS addresses, TLS and token files,
// stateDir, the etcd store, and file positions (comments and layout). Replicas must
// agree on it to share a leader; replicas on one machine may use other ports.
func ConfigDigest(cfg *model.Config) string {
	c := *cfg
	c.ControlPlane = model.ControlPlane{MinRequests: cfg.ControlPlane.MinRequests}
	c.Listeners = make([]model.Listener, len(cfg.Listeners))
	for i, l := range cfg.Listeners {
		l.Address = ""
		c.Listeners[i] = l
	}
	h := sha256.New()
	writeValue(h, reflect.ValueOf(c))
	return hex.EncodeToString(h.Sum(nil)[:8])
}

var posType = reflect.TypeOf(model.Pos{})

// writeValue writes v to h deterministically: struct fields by name, map entries by
// sorted key, every value with its length or kind so that no two values collide. Pos
// values (where something was written) and functions are left out.
func writeValue(h hash.Hash, v reflect.Value) {
	var n [8]byte
	num := func(x uint64) {
		binary.LittleEndian.PutUint64(n[:], x)
		h.Write(n[:])
	}
	str := func(s string) {
		num(uint64(len(s)))
		h.Write([]byte(s))
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			str("nil")
			return
		}
		str("ptr")
		writeValue(h, v.Elem())
	case reflect.Struct:
		if v.Type() == posType {
			return
		}
		// A type that marshals itself as text (netip.Prefix) is written as that text.
		if v.CanInterface() {
			if m, ok := v.Interface().(interface{ MarshalText() ([]byte, error) }); ok {
				b, _ := m.MarshalText()
				str(string(b))
				return
			}
		}
		str(v.Type().String())
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).Type == posType {
				continue
			}
			str(v.Type().Field(i).Name)
			writeValue(h, v.Field(i))
		}
	case reflect.Slice, reflect.Array:
		num(uint64(v.Len()))
		for i := 0; i < v.Len(); i++ {
			writeValue(h, v.Index(i))
		}
	case reflect.Map:
		keys := v.MapKeys()
		sort.Slice(keys, func(i, j int) bool { return keyString(keys[i]) < keyString(keys[j]) })
		num(uint64(len(keys)))
		for _, k := range keys {
			writeValue(h, k)
			writeValue(h, v.MapIndex(k))
		}
	case reflect.String:
		str(v.String())
	case reflect.Bool:
		str(strconv.FormatBool(v.Bool()))
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		num(uint64(v.Int()))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		num(v.Uint())
	case reflect.Float32, reflect.Float64:
		num(math.Float64bits(v.Float()))
	default:
		// Functions, channels: not configuration.
		str(v.Kind().String())
	}
}

func keyString(v reflect.Value) string {
	if v.Kind() == reflect.String {
		return v.String()
	}
	b, _ := json.Marshal(v.Interface())
	return string(b)
}
