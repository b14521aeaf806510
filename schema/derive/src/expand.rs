//! Code generation for the checked inputs from [`crate::ast`].

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use crate::ast::{EventInput, FmtPiece, Member, SetInput, Topic};

pub(crate) fn event(input: &EventInput<'_>) -> syn::Result<TokenStream> {
    let EventInput {
        ident,
        generics,
        name,
        topic,
        krate,
    } = input;
    let p = quote!(#krate::__private);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();

    // For generic events, require what the supertraits need instead of failing on them.
    let mut where_clause = where_clause.cloned();
    if !generics.params.is_empty() {
        where_clause
            .get_or_insert_with(|| syn::parse_quote!(where))
            .predicates
            .push(syn::parse_quote!(
                Self: #p::Serialize + #p::DeserializeOwned + #p::Send + 'static
            ));
    }

    let topic_fn = match topic {
        Topic::None => None,
        Topic::Field { member, ty } => {
            let call = quote_spanned! {ty.span()=>
                <#ty as #p::TopicField>::topic_str(&self.#member)
            };
            Some(quote! {
                fn topic(&self) -> #p::Option<#p::Cow<'_, str>> {
                    #p::Option::map(#call, #p::Cow::Borrowed)
                }
            })
        }
        Topic::Format { pieces } => {
            let mut fmt = String::new();
            let mut args = Vec::new();
            for piece in pieces {
                match piece {
                    FmtPiece::Lit(s) => fmt.push_str(&s.replace('{', "{{").replace('}', "}}")),
                    FmtPiece::Field { member, span } => {
                        fmt.push_str("{}");
                        args.push(quote_spanned!(*span=> &self.#member));
                    }
                }
            }
            let body = if args.is_empty() {
                let text = fmt.replace("{{", "{").replace("}}", "}");
                quote!(#p::Cow::Borrowed(#text))
            } else {
                quote!(#p::Cow::Owned(#p::format!(#fmt, #(#args),*)))
            };
            Some(quote! {
                fn topic(&self) -> #p::Option<#p::Cow<'_, str>> {
                    #p::Option::Some(#body)
                }
            })
        }
    };

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::Event for #ident #ty_generics #where_clause {
            const NAME: &'static str = #name;
            #topic_fn
        }
    })
}

pub(crate) fn event_set(input: &SetInput<'_>) -> syn::Result<TokenStream> {
    let SetInput {
        ident,
        generics,
        variants,
        krate,
    } = input;
    let p = quote!(#krate::__private);
    let (impl_generics, ty_generics, where_clause) = generics.split_for_impl();
    let is_generic = !generics.params.is_empty();

    let mut where_clause = where_clause.cloned();
    if is_generic {
        let preds = &mut where_clause
            .get_or_insert_with(|| syn::parse_quote!(where))
            .predicates;
        for Member { ty, .. } in variants {
            preds.push(syn::parse_quote!(#ty: #krate::Event));
        }
        preds.push(syn::parse_quote!(Self: #p::Send + 'static));
    }

    let names: Vec<TokenStream> = variants
        .iter()
        .map(|Member { ty, .. }| quote_spanned!(ty.span()=> <#ty as #krate::Event>::NAME))
        .collect();
    let arms = variants.iter().zip(&names).map(|(member, name)| {
        let Member { variant, ty, boxed } = member;
        let wrap = if *boxed {
            quote!(|event| Self::#variant(#p::Box::new(event)))
        } else {
            quote!(Self::#variant)
        };
        quote! {
            if name == #name {
                return #p::Result::map(#krate::decode_payload::<#ty>(payload), #wrap);
            }
        }
    });
    // Distinct types can still share a NAME; catch that at compile time when we can
    // (a free constant cannot mention the enum's generic parameters).
    let unique_check = (!is_generic).then(|| {
        quote! {
            const _: () = if #p::has_duplicate_names(&[#(#names),*]) {
                #p::panic!(
                    "#[derive(EventSet)]: two variants hold event types with the same NAME; \
                     each NAME may appear only once in a set"
                )
            };
        }
    });

    Ok(quote! {
        #[automatically_derived]
        impl #impl_generics #krate::EventSet for #ident #ty_generics #where_clause {
            fn names() -> &'static [&'static str] {
                const { &[#(#names),*] }
            }

            fn decode(topic: &[u8], payload: &[u8]) -> #p::Result<Self, #krate::Error> {
                let name = #krate::topic_frame_name(topic)?;
                #(#arms)*
                #p::Result::Err(#p::unknown_event(topic))
            }
        }
        #unique_check
    })
}
