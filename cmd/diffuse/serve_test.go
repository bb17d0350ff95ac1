package main

import (
	"context"
	"io"
	"strings"
	"testing"
)

func TestServeFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string // error substring; "" for success
	}{
		{[]string{"-m", "x"}, ""},
		{[]string{"--models-dir", "d", "--host", "::1"}, ""},
		{[]string{}, "give a model"},
		{[]string{"-m", "x", "--host", "0.0.0.0"}, "--api-auth"},
		{[]string{"-m", "x", "--host", "0.0.0.0", "--api-key", "k"}, ""},
		{[]string{"-m", "x", "--host", "192.168.1.2", "--api-auth", "u:p"}, ""},
		{[]string{"-m", "x", "--port", "70000"}, "port"},
		{[]string{"-m", "x", "extra"}, "unexpected"},
	} {
		_, err := parseServeFlags(c.args, io.Discard)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
}

func TestWorkerFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-m", "x"}, "--nats"},
		{[]string{"--nats", "embedded", "-m", "x"}, "--nats"},
		{[]string{"--nats", "nats://127.0.0.1:1"}, "give a model"},
	} {
		err := runWorker(context.Background(), c.args)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want %q", c.args, err, c.want)
		}
	}
	var nf natsFlags
	nf.listen = "0.0.0.0:4222"
	if _, err := nf.embedded(); err == nil || !strings.Contains(err.Error(), "--nats-token") {
		t.Errorf("embedded NATS beyond loopback without a token: %v", err)
	}
}
