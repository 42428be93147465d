//! [`RerankSpec`]: the one description of "how to re-rank" that every front end fills. The CLI
//! flattens it into its flags (`clap::Args`), the server deserialises it from JSON (serde) or fills
//! it key by key from a query string or form fields ([`RerankSpec::set`]), Python maps its keyword
//! arguments to it. One validation policy ([`RerankSpec::validate`]) and one place where defaults
//! are applied ([`RerankSpec::resolve`]), so the same request means the same thing everywhere:
//!
//! * unknown keys are refused (serde's `deny_unknown_fields`, [`RerankError::UnknownKey`]);
//! * an option given without its method is refused (`sg_m` without `rerank=superglobal`,
//!   `rerank_k` without `rerank=spatial`, `qe_alpha` without `qe`, `dba_alpha` without `dba`);
//! * numbers out of range are refused here, before any search, naming the key.

use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};

use super::{QueryExpansion, Rerank, SpatialOverrides, SpatialRerank, SuperGlobal};
use crate::spatial::{GeometricModel, Matcher};

/// α of α-QE and α-DBA when not given: the value Radenović et al. use and the DOLG / SuperGlobal
/// evaluation scripts pass.
pub const DEFAULT_ALPHA: f32 = 3.0;

/// A re-ranking stage named in `rerank=` (comma-separated, applied in the fixed order of
/// [`Rerank`] whatever the order given).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RerankMethod {
    /// SuperGlobal re-ranking of the top `sg_m` (Shao et al., ICCV 2023).
    Superglobal,
    /// Local-feature matching and RANSAC over the top `rerank_k` (needs an index built with
    /// local features).
    Spatial,
}

impl RerankMethod {
    /// The name `rerank=` takes: `superglobal` or `spatial`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Superglobal => "superglobal",
            Self::Spatial => "spatial",
        }
    }
}

impl FromStr for RerankMethod {
    type Err = RerankError;
    fn from_str(s: &str) -> Result<Self, RerankError> {
        let bad = |why: String| RerankError::Invalid { key: "rerank", value: s.to_string(), why };
        match s.trim() {
            "superglobal" => Ok(Self::Superglobal),
            "spatial" => Ok(Self::Spatial),
            "qe" => Err(bad("α-QE is set with qe=N (the number of top results that expand the query), not rerank=qe".into())),
            "dba" => Err(bad("DBA is set with dba=K; a searchable index has its own (`dolg index dba`), which every search uses".into())),
            other => Err(bad(format!("unknown method '{other}' (superglobal or spatial)"))),
        }
    }
}

/// The methods of `rerank=a,b` (empty entries skipped).
pub fn parse_methods(s: &str) -> Result<Vec<RerankMethod>, RerankError> {
    s.split(',').map(str::trim).filter(|m| !m.is_empty()).map(str::parse).collect()
}

/// How spatially verified results are ordered (`spatial_weight`): a number W orders by global
/// score + W × geometric evidence, `inliers` by inlier count (the DELG authors' order).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpatialWeight(pub Option<f64>);

impl FromStr for SpatialWeight {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::spatial::parse_weight(s).map(SpatialWeight)
    }
}

impl Serialize for SpatialWeight {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(w) => s.serialize_f64(w),
            None => s.serialize_str("inliers"),
        }
    }
}

impl<'de> Deserialize<'de> for SpatialWeight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(w) => Self::from_str(&w.to_string()),
            Raw::Text(t) => Self::from_str(&t),
        }
        .map_err(serde::de::Error::custom)
    }
}

/// A JSON string parsed as the other front ends parse it (the same words, the same errors);
/// `null` is "not given".
fn from_text<'de, D: Deserializer<'de>, T: FromStr<Err = String>>(d: D) -> Result<Option<T>, D::Error> {
    Option::<String>::deserialize(d)?.map(|text| text.parse().map_err(serde::de::Error::custom)).transpose()
}

/// `rerank` as a JSON string ("spatial,superglobal") or a list of names.
fn methods<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<RerankMethod>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }
    let parsed = match Option::<Raw>::deserialize(d)? {
        None => Ok(Vec::new()),
        Some(Raw::Text(t)) => parse_methods(&t),
        Some(Raw::List(l)) => l.iter().map(|m| m.parse()).collect(),
    };
    parsed.map_err(serde::de::Error::custom)
}

/// What a caller asked of re-ranking; `None` means "not given" (the default applies, or, for a
/// spatial setting, the index's local features decide: [`RerankSpec::resolve`]). Field names are
/// the keys every front end uses: `dolg search --sg-m`, `POST /search {"sg_m": …}`,
/// `Collection.search(sg_m=…)`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields, default)]
pub struct RerankSpec {
    /// Re-rank the top results (comma-separated, applied in this order): `superglobal` (Shao et
    /// al., ICCV 2023), `spatial` (local-feature matching + RANSAC on the top --rerank-k, as DELG;
    /// needs an index built with --local).
    #[arg(long, value_name = "METHOD", value_delimiter = ',', value_parser = clap::value_parser!(RerankMethod))]
    #[serde(deserialize_with = "methods", skip_serializing_if = "Vec::is_empty")]
    pub rerank: Vec<RerankMethod>,
    /// α-query expansion with the top N results (Radenović et al. 2018); 0 = off [default: 0].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qe: Option<usize>,
    /// α of α-QE: weights max(q·x, 0)^α (0 = average query expansion) [default: 3].
    #[arg(long, value_name = "A")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qe_alpha: Option<f32>,
    /// α-DBA of the database with each vector's K nearest neighbours (evaluation only: a
    /// searchable index keeps its own, `dolg index dba`).
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dba: Option<usize>,
    /// α of α-DBA [default: 3].
    #[arg(skip)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dba_alpha: Option<f32>,
    /// SuperGlobal: candidates re-ranked [default: 400].
    #[arg(long, value_name = "M")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sg_m: Option<usize>,
    /// SuperGlobal: neighbours refining each candidate (the expanded query is the max over the top
    /// K+1) [default: 9].
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sg_k: Option<usize>,
    /// SuperGlobal: weight of the neighbours [default: 0.15].
    #[arg(long, value_name = "B", allow_negative_numbers = true)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sg_beta: Option<f32>,
    /// Spatial: global results verified [default: the index's local features' setting, 100].
    #[arg(long, value_name = "K")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rerank_k: Option<usize>,
    /// Spatial: inliers that count as no evidence (chance matches of unrelated photos)
    /// [default: the index's local features' setting, 0 for DELG's].
    #[arg(long, value_name = "N")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_inliers: Option<usize>,
    /// Spatial: how verified results are ordered. A number W: by global score + W × evidence, the
    /// evidence m / (m + h) of the m inliers beyond --min-inliers (h = 50 for XFeat features) (a
    /// result only ever moves up, by at most W); `inliers`: by inlier count, the global order only
    /// breaking ties (the DELG authors'). [default: the index's local features' setting, `inliers`
    /// for DELG's].
    #[arg(long, value_name = "W|inliers", value_parser = clap::value_parser!(SpatialWeight))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spatial_weight: Option<SpatialWeight>,
    /// Spatial: how putative matches are made: `mnn` (mutual nearest neighbours of the
    /// descriptors) or `lighterglue` (XFeat's learned matcher: XFeat features only, weights from
    /// `dolg fetch-weights lighterglue`, about 40 times slower a candidate; brings its own
    /// --min-inliers and --spatial-weight defaults) [default: mnn].
    #[arg(long, value_name = "mnn|lighterglue", value_parser = clap::value_parser!(Matcher))]
    #[serde(deserialize_with = "from_text", skip_serializing_if = "Option::is_none")]
    pub matcher: Option<Matcher>,
    /// Spatial: putative matches by Lowe's ratio test with this ratio instead of the distance
    /// bound 0.99 (the DELG authors' evaluation setting).
    #[arg(long, value_name = "R")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub match_ratio: Option<f64>,
    /// Spatial: keep only mutual nearest-neighbour matches (`--mutual`, the default for XFeat
    /// features) or every query feature's nearest neighbour (`--mutual=false`, the default for
    /// DELG features).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutual: Option<bool>,
    /// Spatial: the same as `--mutual=false`.
    #[arg(long, conflicts_with = "mutual")]
    #[serde(skip)]
    pub no_mutual: bool,
    /// Spatial: the transform RANSAC fits: `homography` (8 degrees of freedom, the DELG authors')
    /// or `affine` (6: faster, fewer degenerate fits on near-planar scenes) [default: homography].
    #[arg(long, value_name = "homography|affine", value_parser = clap::value_parser!(GeometricModel))]
    #[serde(deserialize_with = "from_text", skip_serializing_if = "Option::is_none")]
    pub ransac: Option<GeometricModel>,
    /// Spatial: RANSAC inlier threshold in pixels: of the 640 px frame every photo is seen at for
    /// XFeat features (default 8), of the original photos for DELG's (default 20).
    #[arg(long, value_name = "PX")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ransac_px: Option<f64>,
}

/// A re-ranking request that cannot be carried out as given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RerankError {
    /// A key that re-ranking does not take.
    #[error("unknown option '{key}' (re-ranking takes {})", RerankSpec::KEYS.join(", "))]
    UnknownKey {
        /// The key given.
        key: String,
    },
    /// `why` names the value.
    #[error("{key}: {why}")]
    Invalid {
        /// The option.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        why: String,
    },
    /// Options of a method that was not asked for.
    #[error("{keys} set {method}: add rerank={method}")]
    WithoutMethod {
        /// The options given, comma-separated.
        keys: String,
        /// The method they belong to: `spatial` or `superglobal`.
        method: &'static str,
    },
    /// A weight given without the count it applies to (`qe_alpha` without `qe`, `dba_alpha` without `dba`).
    #[error("{key} weights {what}: add {needs}")]
    WithoutCount {
        /// The weight option.
        key: &'static str,
        /// The method it weights: α-QE or α-DBA.
        what: &'static str,
        /// The option to add, with what it means.
        needs: &'static str,
    },
}

impl RerankSpec {
    /// Every key [`RerankSpec::set`] and the JSON form take.
    pub const KEYS: [&'static str; 16] = [
        "rerank",
        "qe",
        "qe_alpha",
        "dba",
        "dba_alpha",
        "sg_m",
        "sg_k",
        "sg_beta",
        "rerank_k",
        "min_inliers",
        "spatial_weight",
        "matcher",
        "match_ratio",
        "mutual",
        "ransac",
        "ransac_px",
    ];
    const SPATIAL_KEYS: [&'static str; 8] = ["rerank_k", "min_inliers", "spatial_weight", "matcher", "match_ratio", "mutual", "ransac", "ransac_px"];

    /// Set one option from its text (a query-string parameter, a form field): the same parsing
    /// for every key as the JSON form. `rerank` adds to the methods already given.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), RerankError> {
        fn num<T: FromStr>(key: &'static str, value: &str, what: &str) -> Result<T, RerankError> {
            value.trim().parse().map_err(|_| RerankError::Invalid { key, value: value.to_string(), why: format!("'{value}' is not {what}") })
        }
        let key = Self::KEYS.into_iter().find(|k| *k == key).ok_or_else(|| RerankError::UnknownKey { key: key.to_string() })?;
        let invalid = |why: String| RerankError::Invalid { key, value: value.to_string(), why };
        match key {
            "rerank" => self.rerank.extend(parse_methods(value)?),
            "qe" => self.qe = Some(num(key, value, "a whole number")?),
            "qe_alpha" => self.qe_alpha = Some(num(key, value, "a number")?),
            "dba" => self.dba = Some(num(key, value, "a whole number")?),
            "dba_alpha" => self.dba_alpha = Some(num(key, value, "a number")?),
            "sg_m" => self.sg_m = Some(num(key, value, "a whole number")?),
            "sg_k" => self.sg_k = Some(num(key, value, "a whole number")?),
            "sg_beta" => self.sg_beta = Some(num(key, value, "a number")?),
            "rerank_k" => self.rerank_k = Some(num(key, value, "a whole number")?),
            "min_inliers" => self.min_inliers = Some(num(key, value, "a whole number")?),
            "spatial_weight" => self.spatial_weight = Some(value.parse().map_err(invalid)?),
            "matcher" => self.matcher = Some(value.parse().map_err(invalid)?),
            "match_ratio" => self.match_ratio = Some(num(key, value, "a number")?),
            "mutual" => {
                self.mutual = Some(match value.trim() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(invalid(format!("'{value}' is not true or false"))),
                })
            }
            "ransac" => self.ransac = Some(value.parse().map_err(|e: String| invalid(e))?),
            "ransac_px" => self.ransac_px = Some(num(key, value, "a number")?),
            _ => unreachable!("every key of KEYS is handled"),
        }
        Ok(())
    }

    /// Whether `method` was asked for.
    pub fn has(&self, method: RerankMethod) -> bool {
        self.rerank.contains(&method)
    }

    /// Nothing asked: the plain global ranking.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// The spatial settings given, as the resolution against an index's defaults takes them.
    pub(crate) fn spatial_overrides(&self) -> SpatialOverrides {
        SpatialOverrides {
            k: self.rerank_k,
            min_inliers: self.min_inliers,
            weight: self.spatial_weight.map(|w| w.0),
            matcher: self.matcher,
            match_ratio: self.match_ratio,
            mutual: if self.no_mutual { Some(false) } else { self.mutual },
            model: self.ransac,
            threshold_px: self.ransac_px,
        }
    }

    /// The one validation policy: options without their method, and values out of range, are
    /// refused with the key named. [`RerankSpec::resolve`] calls it.
    pub fn validate(&self) -> Result<(), RerankError> {
        let given = |pairs: &[(&'static str, bool)]| pairs.iter().filter(|(_, g)| *g).map(|(k, _)| *k).collect::<Vec<_>>();
        let spatial_given = given(&[
            ("rerank_k", self.rerank_k.is_some()),
            ("min_inliers", self.min_inliers.is_some()),
            ("spatial_weight", self.spatial_weight.is_some()),
            ("matcher", self.matcher.is_some()),
            ("match_ratio", self.match_ratio.is_some()),
            ("mutual", self.mutual.is_some() || self.no_mutual),
            ("ransac", self.ransac.is_some()),
            ("ransac_px", self.ransac_px.is_some()),
        ]);
        debug_assert!(spatial_given.iter().all(|k| Self::SPATIAL_KEYS.contains(k)));
        if !self.has(RerankMethod::Spatial) && !spatial_given.is_empty() {
            return Err(RerankError::WithoutMethod { keys: spatial_given.join(", "), method: "spatial" });
        }
        let sg_given = given(&[("sg_m", self.sg_m.is_some()), ("sg_k", self.sg_k.is_some()), ("sg_beta", self.sg_beta.is_some())]);
        if !self.has(RerankMethod::Superglobal) && !sg_given.is_empty() {
            return Err(RerankError::WithoutMethod { keys: sg_given.join(", "), method: "superglobal" });
        }
        if self.qe_alpha.is_some() && self.qe.unwrap_or(0) == 0 {
            return Err(RerankError::WithoutCount { key: "qe_alpha", what: "α-QE", needs: "qe=N (the number of top results that expand the query)" });
        }
        if self.dba_alpha.is_some() && self.dba.unwrap_or(0) == 0 {
            return Err(RerankError::WithoutCount { key: "dba_alpha", what: "α-DBA", needs: "dba=K (the neighbours that augment each database vector)" });
        }
        let check = |key: &'static str, value: f64, ok: bool, why: &str| -> Result<(), RerankError> {
            if ok {
                Ok(())
            } else {
                Err(RerankError::Invalid { key, value: value.to_string(), why: format!("{value} {why}") })
            }
        };
        for (key, alpha) in [("qe_alpha", self.qe_alpha), ("dba_alpha", self.dba_alpha)] {
            if let Some(a) = alpha {
                check(key, a.into(), a.is_finite() && a >= 0.0, "must be a finite number >= 0")?;
            }
        }
        // sg_k may be 0: no refinement, and the expanded query is the top candidate's.
        for (key, count) in [("sg_m", self.sg_m), ("rerank_k", self.rerank_k)] {
            if let Some(n) = count {
                check(key, n as f64, n > 0, "must be at least 1")?;
            }
        }
        if let Some(b) = self.sg_beta {
            check("sg_beta", b.into(), b.is_finite(), "must be finite")?;
        }
        if let Some(r) = self.match_ratio {
            check("match_ratio", r, r > 0.0 && r <= 1.0, "must be in (0, 1]")?;
        }
        if let Some(px) = self.ransac_px {
            check("ransac_px", px, px > 0.0 && px.is_finite(), "must be positive and finite")?;
        }
        Ok(())
    }

    /// The re-ranking asked for, every default applied: α [`DEFAULT_ALPHA`], SuperGlobal's
    /// [`SuperGlobal::default`], and for spatial settings not given those of `spatial_defaults`
    /// (an index's: [`crate::collection::Collection::spatial_rerank_defaults`]; the DELG authors'
    /// evaluation settings are [`SpatialRerank::default`]).
    pub fn resolve(&self, spatial_defaults: SpatialRerank) -> Result<Rerank, RerankError> {
        self.validate()?;
        let sg = SuperGlobal::default();
        let spatial = self.has(RerankMethod::Spatial).then(|| self.spatial_overrides().resolve(spatial_defaults));
        if let Some(s) = &spatial {
            // What the resolution produced (an index's own defaults included) must verify.
            s.params.validate().map_err(|e| RerankError::Invalid { key: "rerank", value: "spatial".into(), why: e.to_string() })?;
        }
        Ok(Rerank {
            qe: self.qe.filter(|&n| n > 0).map(|n| QueryExpansion { n, alpha: self.qe_alpha.unwrap_or(DEFAULT_ALPHA) }),
            superglobal: self.has(RerankMethod::Superglobal).then(|| SuperGlobal {
                m: self.sg_m.unwrap_or(sg.m),
                k: self.sg_k.unwrap_or(sg.k),
                beta: self.sg_beta.unwrap_or(sg.beta),
            }),
            spatial,
        })
    }

    /// α-DBA asked for: (neighbours, α).
    pub fn dba(&self) -> Option<(usize, f32)> {
        self.dba.filter(|&k| k > 0).map(|k| (k, self.dba_alpha.unwrap_or(DEFAULT_ALPHA)))
    }
}

impl FromStr for RerankSpec {
    type Err = RerankError;
    /// A query string: `rerank=spatial&rerank_k=50` (`&`-separated `key=value` pairs, not
    /// percent-decoded: no value needs it). Validated.
    fn from_str(s: &str) -> Result<Self, RerankError> {
        let mut spec = Self::default();
        for pair in s.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            spec.set(key, value)?;
        }
        spec.validate()?;
        Ok(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        spec: RerankSpec,
    }

    fn cli(args: &[&str]) -> RerankSpec {
        Cli::try_parse_from(std::iter::once("dolg").chain(args.iter().copied())).unwrap().spec
    }

    fn json(s: &str) -> Result<RerankSpec, String> {
        serde_json::from_str(s).map_err(|e| e.to_string())
    }

    /// The same request through the three spellings gives the same spec.
    #[test]
    fn flags_json_and_query_strings_agree() {
        let from_cli = cli(&[
            "--rerank",
            "spatial,superglobal",
            "--qe",
            "2",
            "--sg-m",
            "50",
            "--rerank-k",
            "30",
            "--spatial-weight",
            "inliers",
            "--mutual",
            "--ransac",
            "affine",
        ]);
        let from_json =
            json(r#"{"rerank": "spatial,superglobal", "qe": 2, "sg_m": 50, "rerank_k": 30, "spatial_weight": "inliers", "mutual": true, "ransac": "affine"}"#)
                .unwrap();
        let from_list = json(
            r#"{"rerank": ["spatial", "superglobal"], "qe": 2, "sg_m": 50, "rerank_k": 30, "spatial_weight": "inliers", "mutual": true, "ransac": "affine"}"#,
        )
        .unwrap();
        let from_query: RerankSpec = "rerank=spatial,superglobal&qe=2&sg_m=50&rerank_k=30&spatial_weight=inliers&mutual=true&ransac=affine".parse().unwrap();
        assert_eq!(from_cli, from_json);
        assert_eq!(from_cli, from_list);
        assert_eq!(from_cli, from_query);
        assert_eq!(cli(&["--rerank", "spatial", "--no-mutual"]).spatial_overrides().mutual, Some(false));
        assert_eq!(cli(&["--rerank", "spatial", "--mutual=false"]).spatial_overrides().mutual, Some(false));
        // A bare --mutual takes no value: the query image after it stays a query image.
        #[derive(Parser)]
        struct Search {
            #[command(flatten)]
            spec: RerankSpec,
            queries: Vec<String>,
        }
        let s = Search::try_parse_from(["dolg", "--rerank", "spatial", "--mutual", "q.jpg"]).unwrap();
        assert_eq!((s.spec.mutual, s.queries), (Some(true), vec!["q.jpg".to_string()]));
        // null is "not given", as for every other key.
        assert_eq!(json(r#"{"rerank": null, "matcher": null, "ransac": null, "qe": null}"#).unwrap(), RerankSpec::default());
    }

    #[test]
    fn unknown_keys_are_refused_in_every_form() {
        assert!(json(r#"{"rerank": "spatial", "sg_mm": 3}"#).unwrap_err().contains("sg_mm"));
        let e = "qe=2&bogus=1".parse::<RerankSpec>().unwrap_err();
        assert_eq!(e, RerankError::UnknownKey { key: "bogus".into() });
        assert!(e.to_string().contains("rerank_k"), "{e}");
        assert!(json(r#"{"rerank": "qe"}"#).unwrap_err().contains("qe=N"));
        assert!(matches!("rerank=dba".parse::<RerankSpec>(), Err(RerankError::Invalid { key: "rerank", .. })));
    }

    #[test]
    fn options_without_their_method_are_refused() {
        let e = "ransac_px=4&mutual=false".parse::<RerankSpec>().unwrap_err();
        assert_eq!(e, RerankError::WithoutMethod { keys: "mutual, ransac_px".into(), method: "spatial" });
        assert_eq!(e.to_string(), "mutual, ransac_px set spatial: add rerank=spatial");
        assert!(matches!("sg_beta=0.2".parse::<RerankSpec>(), Err(RerankError::WithoutMethod { method: "superglobal", .. })));
        assert!(matches!("qe_alpha=1".parse::<RerankSpec>(), Err(RerankError::WithoutCount { key: "qe_alpha", .. })));
        assert!(matches!("qe=0&qe_alpha=1".parse::<RerankSpec>(), Err(RerankError::WithoutCount { key: "qe_alpha", .. })));
        assert!(matches!("dba_alpha=1".parse::<RerankSpec>(), Err(RerankError::WithoutCount { key: "dba_alpha", .. })));
        assert!(cli(&["--no-mutual"]).validate().is_err());
    }

    #[test]
    fn values_out_of_range_name_their_key() {
        for (q, key) in [
            ("rerank=spatial&match_ratio=1.5", "match_ratio"),
            ("rerank=spatial&ransac_px=0", "ransac_px"),
            ("rerank=spatial&rerank_k=0", "rerank_k"),
            ("rerank=superglobal&sg_m=0", "sg_m"),
            ("qe=3&qe_alpha=-1", "qe_alpha"),
        ] {
            match q.parse::<RerankSpec>() {
                Err(RerankError::Invalid { key: k, .. }) => assert_eq!(k, key, "{q}"),
                other => panic!("{q}: {other:?}"),
            }
        }
        assert!(matches!("rerank=spatial&spatial_weight=-1".parse::<RerankSpec>(), Err(RerankError::Invalid { key: "spatial_weight", .. })));
        assert!(json(r#"{"rerank": "spatial", "spatial_weight": -1}"#).is_err());
        assert!(json(r#"{"rerank": "spatial", "ransac": "projective"}"#).is_err());
    }

    #[test]
    fn resolve_applies_the_named_defaults_once() {
        let plain = RerankSpec::default().resolve(SpatialRerank::default()).unwrap();
        assert!(plain.is_none());
        let r: Rerank = "qe=5&rerank=superglobal".parse::<RerankSpec>().unwrap().resolve(SpatialRerank::default()).unwrap();
        assert_eq!(r.qe, Some(QueryExpansion { n: 5, alpha: DEFAULT_ALPHA }));
        assert_eq!(r.superglobal, Some(SuperGlobal::default()));
        assert_eq!(r.spatial, None);
        let defaults = SpatialRerank { k: 77, ..SpatialRerank::default() };
        let r = "rerank=spatial&ransac_px=4".parse::<RerankSpec>().unwrap().resolve(defaults).unwrap();
        let s = r.spatial.unwrap();
        assert_eq!((s.k, s.params.threshold_px, s.params.model), (77, 4.0, defaults.params.model));
        assert_eq!("dba=10".parse::<RerankSpec>().unwrap().dba(), Some((10, DEFAULT_ALPHA)));
        // The documented defaults are the constants.
        assert_eq!((SuperGlobal::default().m, SuperGlobal::default().k, SuperGlobal::default().beta), (400, 9, 0.15));
        assert_eq!(DEFAULT_ALPHA, 3.0);
    }

    /// A spec written out reads back the same (the server's OpenAPI examples, logs).
    #[test]
    fn round_trips_through_json() {
        let s = cli(&["--rerank", "spatial", "--qe", "1", "--qe-alpha", "0.5", "--spatial-weight", "2", "--matcher", "lighterglue", "--match-ratio", "0.8"]);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(json(&text).unwrap(), s, "{text}");
    }
}
