package tensor

// Reverse-mode autodiff. An op records a node only when one of its inputs
// requires gradients, so inference builds no graph and pays nothing.

type node struct {
	inputs []*Tensor
	// backward maps the gradient of the output to gradients of the inputs
	// (nil entries for inputs that get none).
	backward func(g *Tensor) []*Tensor
}

// SetRequiresGrad marks a leaf tensor as a parameter whose gradient is wanted.
func (t *Tensor) SetRequiresGrad(v bool) *Tensor {
	t.requiresGrad = v
	return t
}

// RequiresGrad reports whether gradients flow to t.
func (t *Tensor) RequiresGrad() bool { return t.requiresGrad }

// Grad returns the accumulated gradient of a leaf after Backward (nil if none).
func (t *Tensor) Grad() *Tensor { return t.grad }

// ZeroGrad clears the accumulated gradient.
func (t *Tensor) ZeroGrad() { t.grad = nil }

func anyRequiresGrad(ts []*Tensor) bool {
	for _, t := range ts {
		if t != nil && t.requiresGrad {
			return true
		}
	}
	return false
}

// record attaches a backward function to out when any input requires grad.
func record(out *Tensor, inputs []*Tensor, backward func(g *Tensor) []*Tensor) {
	if !anyRequiresGrad(inputs) || noGradDepth.Load() > 0 {
		return
	}
	out.requiresGrad = true
	if checkpointDepth.Load() > 0 {
		return // a checkpoint's forward: flag the output, keep no graph
	}
	out.node = &node{inputs: inputs, backward: backward}
}

// Backward computes gradients of t (a scalar, or with seed gradient g when
// given) with respect to every leaf that requires grad, accumulating them in
// the leaves' Grad.
func (t *Tensor) Backward(seed ...*Tensor) {
	var g *Tensor
	if len(seed) > 0 && seed[0] != nil {
		g = seed[0]
	} else {
		g = Full(1, t.shape...)
	}
	if !t.requiresGrad {
		return
	}
	// Topological order by depth-first search.
	var order []*Tensor
	seen := map[*Tensor]bool{}
	var visit func(x *Tensor)
	visit = func(x *Tensor) {
		stack := []struct {
			t    *Tensor
			next int
		}{{x, 0}}
		seen[x] = true
		for len(stack) > 0 {
			top := &stack[len(stack)-1]
			if top.t.node != nil && top.next < len(top.t.node.inputs) {
				in := top.t.node.inputs[top.next]
				top.next++
				if in != nil && in.requiresGrad && !seen[in] {
					seen[in] = true
					stack = append(stack, struct {
						t    *Tensor
						next int
					}{in, 0})
				}
				continue
			}
			order = append(order, top.t)
			stack = stack[:len(stack)-1]
		}
	}
	visit(t)
	grads := map[*Tensor]*Tensor{t: g}
	for i := len(order) - 1; i >= 0; i-- {
		x := order[i]
		gx := grads[x]
		if gx == nil {
			continue
		}
		if x.node == nil { // leaf
			if x.grad == nil {
				x.grad = gx.Detach().Clone()
			} else {
				x.grad = addNoGrad(x.grad, gx)
			}
			continue
		}
		delete(grads, x) // free intermediate gradients early
		gins := x.node.backward(gx)
		for j, in := range x.node.inputs {
			if in == nil || !in.requiresGrad || j >= len(gins) || gins[j] == nil {
				continue
			}
			gi := gins[j].Detach()
			if !SameShape(gi.shape, in.shape) {
				gi = sumToShape(gi, in.shape)
			}
			if prev := grads[in]; prev != nil {
				grads[in] = addNoGrad(prev, gi)
			} else {
				grads[in] = gi
			}
		}
	}
}

// NoGrad returns a copy of ts' views detached from the graph (helper for
// gradient functions, which must not record).
func addNoGrad(a, b *Tensor) *Tensor { return Add(a.Detach(), b.Detach()) }
