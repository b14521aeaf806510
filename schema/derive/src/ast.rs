//! Parsing: the derive input and its `#[event(...)]` / `#[event_set(...)]` attributes,
//! checked with the rules in [`crate::valid`] and the NAME rule of `xbus_names`.

use proc_macro2::Span;
use quote::ToTokens;
use syn::ext::IdentExt;
use syn::spanned::Spanned;
use syn::{Attribute, Data, DeriveInput, Fields, Generics, Ident, LitStr, Path, Type};

use crate::valid::{self, Piece};

/// Collects every error found, so one compile run reports them all.
#[derive(Default)]
struct Errors(Option<syn::Error>);

impl Errors {
    fn push(&mut self, err: syn::Error) {
        match &mut self.0 {
            Some(all) => all.combine(err),
            None => self.0 = Some(err),
        }
    }

    fn spanned<T: ToTokens>(&mut self, tokens: T, msg: impl std::fmt::Display) {
        self.push(syn::Error::new_spanned(tokens, msg));
    }

    fn finish(self) -> syn::Result<()> {
        self.0.map_or(Ok(()), Err)
    }
}

/// A checked `#[derive(Event)]` input.
pub(crate) struct EventInput<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub name: String,
    pub topic: Topic<'a>,
    pub krate: Path,
}

/// Where an event's topic comes from.
pub(crate) enum Topic<'a> {
    None,
    /// `#[event(topic)]` on this field.
    Field {
        member: syn::Member,
        ty: &'a Type,
    },
    /// `#[event(topic = "...")]` on the struct.
    Format {
        pieces: Vec<FmtPiece>,
    },
}

/// A resolved piece of a topic format.
pub(crate) enum FmtPiece {
    Lit(String),
    Field { member: syn::Member, span: Span },
}

/// The schema crate's path as the deriving crate sees it, read from its Cargo.toml: a direct
/// `xbus-schema` dependency (under whatever name) wins, else the `xbus` facade's re-export
/// `::xbus::schema`, else `::xbus_schema`. `#[event(crate = "...")]` overrides this.
fn default_crate() -> Path {
    use proc_macro_crate::{crate_name, FoundCrate};
    let ident = |name: &str| syn::Ident::new(name, Span::call_site());
    match crate_name("xbus-schema") {
        Ok(FoundCrate::Name(name)) => {
            let name = ident(&name);
            return syn::parse_quote!(::#name);
        }
        // Itself: a test, bench or doctest of xbus-schema, which sees it as an external crate.
        Ok(FoundCrate::Itself) => return syn::parse_quote!(::xbus_schema),
        Err(_) => {}
    }
    match crate_name("xbus") {
        Ok(FoundCrate::Name(name)) => {
            let name = ident(&name);
            syn::parse_quote!(::#name::schema)
        }
        _ => syn::parse_quote!(::xbus_schema),
    }
}

fn parse_crate_path(lit: &LitStr) -> syn::Result<Path> {
    lit.parse::<Path>().map_err(|_| {
        syn::Error::new_spanned(
            lit,
            format!(
                "`crate` must be a path such as \"::xbus_schema\" or \"xbus\", not {:?}",
                lit.value()
            ),
        )
    })
}

impl<'a> EventInput<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        let mut errors = Errors::default();
        let fields = match &input.data {
            Data::Struct(s) => &s.fields,
            Data::Enum(e) => {
                return Err(syn::Error::new_spanned(
                    e.enum_token,
                    "`#[derive(Event)]` only supports structs; to receive several event types \
                     with one subscriber, derive `EventSet` on an enum whose variants each hold \
                     one event struct",
                ))
            }
            Data::Union(u) => return Err(syn::Error::new_spanned(
                u.union_token,
                "`#[derive(Event)]` only supports structs; unions cannot be serialized by serde",
            )),
        };
        if matches!(fields, Fields::Unit) {
            errors.spanned(
                &input.ident,
                format!(
                    "a unit struct serializes as `null`, not as a map, so it cannot be an event; \
                     declare it with braces: `struct {} {{}}`",
                    input.ident
                ),
            );
        }

        // Container attributes.
        let mut name: Option<LitStr> = None;
        let mut format: Option<LitStr> = None;
        let mut krate: Option<LitStr> = None;
        for attr in event_attrs(&input.attrs, "event") {
            let res = attr.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(|i| i.unraw().to_string());
                let slot = match key.as_deref() {
                    Some("name") => &mut name,
                    Some("crate") => &mut krate,
                    Some("topic") => {
                        if !meta.input.peek(syn::Token![=]) {
                            return Err(meta.error(
                                "on the struct, `topic` needs a format, like \
                                 `#[event(topic = \"{service}.{kind}\")]`; to use a single field \
                                 as the topic, put `#[event(topic)]` on that field",
                            ));
                        }
                        &mut format
                    }
                    _ => {
                        return Err(meta.error(format!(
                            "unknown `event` attribute `{}`; expected `name = \"...\"`, \
                             `topic = \"...\"` or `crate = \"...\"`",
                            meta.path.to_token_stream().to_string().replace(' ', "")
                        )))
                    }
                };
                let lit: LitStr = meta.value()?.parse()?;
                if slot.is_some() {
                    return Err(syn::Error::new_spanned(
                        &meta.path,
                        format!("duplicate `{}` attribute", key.unwrap_or_default()),
                    ));
                }
                *slot = Some(lit);
                Ok(())
            });
            if let Err(e) = res {
                errors.push(e);
            }
        }

        // Field attributes.
        let mut topic_field: Option<(syn::Member, &Type, &Attribute)> = None;
        for (index, field) in fields.iter().enumerate() {
            for attr in event_attrs(&field.attrs, "event") {
                let res = attr.parse_nested_meta(|meta| {
                    if !meta.path.is_ident("topic") {
                        return Err(meta.error(format!(
                            "unknown `event` field attribute `{}`; the only field attribute is \
                             `#[event(topic)]`",
                            meta.path.to_token_stream().to_string().replace(' ', "")
                        )));
                    }
                    if meta.input.peek(syn::Token![=]) {
                        return Err(meta.error(
                            "`#[event(topic = \"...\")]` is a struct attribute; on a field, write \
                             just `#[event(topic)]`",
                        ));
                    }
                    if let Some((first, _, _)) = &topic_field {
                        return Err(meta.error(format!(
                            "only one field can be the topic, and `{}` already is; to combine \
                             several fields, put a format on the struct: \
                             `#[event(topic = \"{{a}}.{{b}}\")]`",
                            first.to_token_stream()
                        )));
                    }
                    let member = field
                        .ident
                        .clone()
                        .map_or_else(|| syn::Member::from(index), syn::Member::Named);
                    topic_field = Some((member, &field.ty, attr));
                    Ok(())
                });
                if let Err(e) = res {
                    errors.push(e);
                }
            }
        }

        let name = match &name {
            Some(lit) => {
                let value = lit.value();
                if let Err(rule) = xbus_names::check_name(&value) {
                    errors.spanned(lit, format!("invalid event name {value:?}: {rule}"));
                }
                value
            }
            None => input.ident.unraw().to_string(),
        };

        let krate = match &krate {
            Some(lit) => parse_crate_path(lit).unwrap_or_else(|e| {
                errors.push(e);
                default_crate()
            }),
            None => default_crate(),
        };

        let topic = match (topic_field, &format) {
            (Some((_, _, attr)), Some(_)) => {
                errors.spanned(
                    attr,
                    "an event cannot have both a `#[event(topic)]` field and a \
                     `#[event(topic = \"...\")]` format on the struct; remove one of them",
                );
                Topic::None
            }
            (Some((member, ty, _)), None) => Topic::Field { member, ty },
            (None, Some(lit)) => match resolve_format(lit, fields, &input.ident) {
                Ok(pieces) => Topic::Format { pieces },
                Err(e) => {
                    errors.push(e);
                    Topic::None
                }
            },
            (None, None) => Topic::None,
        };

        errors.finish()?;
        Ok(Self {
            ident: &input.ident,
            generics: &input.generics,
            name,
            topic,
            krate,
        })
    }
}

/// Parses and checks a topic format, resolving each placeholder to a field.
fn resolve_format(lit: &LitStr, fields: &Fields, ident: &Ident) -> syn::Result<Vec<FmtPiece>> {
    let pieces =
        valid::parse_format(&lit.value()).map_err(|msg| syn::Error::new_spanned(lit, msg))?;
    valid::format_rule(&pieces).map_err(|reason| {
        syn::Error::new_spanned(lit, format!("invalid topic format: {reason}"))
    })?;
    let mut errors = Errors::default();
    let mut out = Vec::with_capacity(pieces.len());
    for piece in pieces {
        match piece {
            Piece::Lit(s) => out.push(FmtPiece::Lit(s)),
            Piece::Field(name) => {
                let found = fields.iter().enumerate().find_map(|(i, f)| match &f.ident {
                    Some(id) if id.unraw() == name.trim_start_matches("r#") => {
                        Some((syn::Member::Named(id.clone()), f.ty.span()))
                    }
                    None if name.parse::<usize>() == Ok(i) => {
                        Some((syn::Member::from(i), f.ty.span()))
                    }
                    _ => None,
                });
                match found {
                    Some((member, span)) => out.push(FmtPiece::Field { member, span }),
                    None => errors.spanned(
                        lit,
                        format!(
                            "the topic format refers to `{{{name}}}`, but `{ident}` has no field \
                             named `{name}`"
                        ),
                    ),
                }
            }
        }
    }
    errors.finish()?;
    Ok(out)
}

fn event_attrs<'a>(attrs: &'a [Attribute], name: &'a str) -> impl Iterator<Item = &'a Attribute> {
    attrs.iter().filter(move |a| a.path().is_ident(name))
}

/// A checked `#[derive(EventSet)]` input.
pub(crate) struct SetInput<'a> {
    pub ident: &'a Ident,
    pub generics: &'a Generics,
    pub variants: Vec<Member<'a>>,
    pub krate: Path,
}

/// One variant of an event set.
pub(crate) struct Member<'a> {
    pub variant: &'a Ident,
    /// The event type (inside the `Box`, if boxed).
    pub ty: &'a Type,
    /// Whether the variant holds `Box<ty>`.
    pub boxed: bool,
}

/// `Box<T>` → `Some(T)`.
fn boxed_type(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    if p.qself.is_some() {
        return None;
    }
    let last = p.path.segments.last()?;
    if last.ident != "Box" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(syn::GenericArgument::Type(inner)) if args.args.len() == 1 => Some(inner),
        _ => None,
    }
}

impl<'a> SetInput<'a> {
    pub(crate) fn from_syn(input: &'a DeriveInput) -> syn::Result<Self> {
        const SHAPE: &str = "`#[derive(EventSet)]` needs an enum whose variants each hold exactly \
                             one event type, like `enum Inbox { Started(Started), Stopped(Stopped) }`";
        let data = match &input.data {
            Data::Enum(e) => e,
            Data::Struct(s) => {
                return Err(syn::Error::new_spanned(
                    s.struct_token,
                    format!("{SHAPE}; a single event type needs no derive, since every `Event` is already an `EventSet`"),
                ))
            }
            Data::Union(u) => return Err(syn::Error::new_spanned(u.union_token, SHAPE)),
        };
        let mut errors = Errors::default();

        let mut krate: Option<LitStr> = None;
        for attr in event_attrs(&input.attrs, "event_set") {
            let res = attr.parse_nested_meta(|meta| {
                if !meta.path.is_ident("crate") {
                    return Err(meta.error(format!(
                        "unknown `event_set` attribute `{}`; the only one is `crate = \"...\"`",
                        meta.path.to_token_stream().to_string().replace(' ', "")
                    )));
                }
                let lit: LitStr = meta.value()?.parse()?;
                if krate.is_some() {
                    return Err(syn::Error::new_spanned(
                        &meta.path,
                        "duplicate `crate` attribute",
                    ));
                }
                krate = Some(lit);
                Ok(())
            });
            if let Err(e) = res {
                errors.push(e);
            }
        }
        let krate = match &krate {
            Some(lit) => parse_crate_path(lit).unwrap_or_else(|e| {
                errors.push(e);
                default_crate()
            }),
            None => default_crate(),
        };

        if data.variants.is_empty() {
            errors.spanned(&input.ident, format!("{SHAPE}; this enum has no variants"));
        }
        let mut variants: Vec<Member<'a>> = Vec::new();
        for v in &data.variants {
            let ty = match &v.fields {
                Fields::Unnamed(f) if f.unnamed.len() == 1 => f.unnamed.first().map(|f| &f.ty),
                _ => None,
            };
            let Some(ty) = ty else {
                errors.spanned(
                    v,
                    format!(
                        "variant `{0}` must hold exactly one event type, like `{0}({0})`",
                        v.ident
                    ),
                );
                continue;
            };
            let (ty, boxed) = boxed_type(ty).map_or((ty, false), |inner| (inner, true));
            let key = ty.to_token_stream().to_string();
            if let Some(other) = variants
                .iter()
                .find(|m| m.ty.to_token_stream().to_string() == key)
            {
                errors.spanned(
                    ty,
                    format!(
                        "`{}` is already held by variant `{}`; each event type may appear only once in a set",
                        key.replace(' ', ""),
                        other.variant
                    ),
                );
                continue;
            }
            variants.push(Member {
                variant: &v.ident,
                ty,
                boxed,
            });
        }
        errors.finish()?;
        Ok(Self {
            ident: &input.ident,
            generics: &input.generics,
            variants,
            krate,
        })
    }
}
