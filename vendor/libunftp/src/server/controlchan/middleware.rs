use crate::server::{
    Event,
    controlchan::{Reply, error::ControlChanError},
};
use std::{future::Future, pin::Pin};

// Defines the requirements for code that wants to intercept and do something with control channel events.
//
// The chain is built of concrete types (each middleware is generic over the next), so `handle`
// returns its future unboxed: the whole chain is one future, without an allocation and a copy
// per middleware per event.
pub trait ControlChanMiddleware: Send + Sync {
    // Handles the specified `Event` and returns a `Reply` for the user or a `ControlChanError` if
    // some unexpected error occurred.
    fn handle(&mut self, e: Event) -> impl Future<Output = Result<Reply, ControlChanError>> + Send;
}

// Allows plain functions to be middleware. Experimental...
impl<Function> ControlChanMiddleware for Function
where
    Function: Send + Sync + Fn(Event) -> Pin<Box<dyn Future<Output = Result<Reply, ControlChanError>> + Send>>,
{
    fn handle(&mut self, e: Event) -> impl Future<Output = Result<Reply, ControlChanError>> + Send {
        (self)(e)
    }
}
