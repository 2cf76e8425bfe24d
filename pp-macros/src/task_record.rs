//! The record of a task in the executable's task section (pp-runtime's `task_record`
//! module): its id and fingerprint as bytes, so that a client can read the task list of a
//! build of the program for another target from the file.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

/// The task's record (id and fingerprint as bytes) in the task section, which a client
/// reads from builds of the program for other targets (pp-runtime's `task_record`). The
/// registry entry references it, so the linker keeps it.
pub(crate) fn task_record(
    name: &Ident,
    id: &TokenStream,
    fingerprint: &TokenStream,
) -> TokenStream {
    quote! {
        #[used]
        #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__pp_tasks"))]
        #[cfg_attr(windows, unsafe(link_section = ".pptasks"))]
        #[cfg_attr(
            not(any(target_vendor = "apple", windows)),
            unsafe(link_section = ".pp_tasks")
        )]
        #[allow(non_upper_case_globals)]
        static #name: [u8; ::pp::__private::task_record_len(#id)] =
            ::pp::__private::task_record(#id, #fingerprint);
    }
}
