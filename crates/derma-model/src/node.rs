//! The autodiff node that [`crate::depthwise`] and [`crate::pointwise`] share: an operation of
//! an input `x` and a weight, both checkpointed, whose backward pass is one call of the inner
//! backend returning both gradients (each registered only for a parent that is tracked).

use std::marker::PhantomData;

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};

/// The backward pass of an operation of `x` and a weight on the inner backend `B`.
pub(crate) trait WeightedBackward<B: Backend>: Send + core::fmt::Debug + 'static {
    /// What the operation takes besides its two tensors (a convolution's options).
    type Options: Clone + Send + core::fmt::Debug + 'static;

    /// `(dx, dw)` from the checkpointed `x` and weight and the output's gradient `grad`.
    fn gradients(x: FloatTensor<B>, weight: FloatTensor<B>, grad: FloatTensor<B>, options: Self::Options) -> (FloatTensor<B>, FloatTensor<B>);
}

/// The node of an operation `O`: its state is the two parents' checkpoints and the options.
#[derive(Debug)]
struct Node<O>(PhantomData<O>);

impl<B: Backend, O: WeightedBackward<B>> Backward<B, 2> for Node<O> {
    type State = ([NodeId; 2], O::Options);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, checkpointer: &mut Checkpointer) {
        let [node_x, node_weight] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let ([x_state, weight_state], options) = ops.state;
        let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
        let weight = checkpointer.retrieve_node_output::<FloatTensor<B>>(weight_state);
        let (x_grad, weight_grad) = O::gradients(x, weight, grad, options);
        if let Some(node) = node_x {
            grads.register::<B>(node.id, x_grad);
        }
        if let Some(node) = node_weight {
            grads.register::<B>(node.id, weight_grad);
        }
    }
}

/// `forward(x, weight, options)` on the inner backend as one node of the autodiff graph, its
/// backward pass `O::gradients` (nothing recorded when neither parent is tracked).
pub(crate) fn weighted<B: Backend, C: CheckpointStrategy, O: WeightedBackward<B>>(
    x: FloatTensor<Autodiff<B, C>>,
    weight: FloatTensor<Autodiff<B, C>>,
    options: O::Options,
    forward: impl FnOnce(FloatTensor<B>, FloatTensor<B>, O::Options) -> FloatTensor<B>,
) -> FloatTensor<Autodiff<B, C>> {
    match Node::<O>(PhantomData).prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
        OpsKind::Tracked(mut prep) => {
            let states = [prep.checkpoint(&x), prep.checkpoint(&weight)];
            let output = forward(x.into_primitive(), weight.into_primitive(), options.clone());
            prep.finish((states, options), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(x.into_primitive(), weight.into_primitive(), options)),
    }
}
