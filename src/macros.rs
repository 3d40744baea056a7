//! Macros shared by the middleware.

/// `get_ref`, `get_mut` and `into_inner` for a service that wraps its inner service `S` in a
/// field named `inner`; expands inside an `impl` block (tower-http does the same).
macro_rules! define_inner_service_accessors {
    () => {
        /// The wrapped service.
        pub fn get_ref(&self) -> &S {
            &self.inner
        }

        /// The wrapped service, mutably.
        pub fn get_mut(&mut self) -> &mut S {
            &mut self.inner
        }

        /// The wrapped service, consuming this one.
        pub fn into_inner(self) -> S {
            self.inner
        }
    };
}
