using System.Net.Security;
using System.Security.Cryptography.X509Certificates;
using NATS.Client;

namespace BackupAppliance.Transport.Nats;

/// <summary>
/// TLS for the 0.8.0 client, which has no CA-file option: the server certificate is checked here,
/// against the CA file (or the system's roots) and, unless turned off, the URL's host name. The
/// client certificate comes from PEM files. The last refusal is kept to explain a failed connect.
/// </summary>
internal sealed class NatsTlsValidation
{
    private readonly NatsTransportOptions _options;
    private readonly X509Certificate2Collection? _authorities;
    private volatile string? _lastProblem;

    public NatsTlsValidation(NatsTransportOptions options)
    {
        _options = options;
        if (options.TlsCaFile is not null)
        {
            _authorities = new X509Certificate2Collection();
            try
            {
                _authorities.ImportFromPemFile(options.TlsCaFile);
            }
            catch (System.Security.Cryptography.CryptographicException e)
            {
                throw new NatsOptionsException(nameof(NatsTransportOptions.TlsCaFile), $"'{options.TlsCaFile}' is not a PEM certificate file: {e.Message}");
            }
            if (_authorities.Count == 0)
                throw new NatsOptionsException(nameof(NatsTransportOptions.TlsCaFile), $"'{options.TlsCaFile}' holds no certificate");
        }
    }

    /// <summary>Why the last server certificate was refused, if one was.</summary>
    public string? LastProblem => _lastProblem;

    public void Configure(Options o)
    {
        o.Secure = true;
        o.TLSRemoteCertificationValidationCallback = Validate;
        if (_options.TlsCertFile is null)
            return;
        try
        {
            using var pem = X509Certificate2.CreateFromPemFile(_options.TlsCertFile, _options.TlsKeyFile);
            // SslStream wants a certificate whose key it can use: export and re-import the pair.
            o.AddCertificate(X509CertificateLoader.LoadPkcs12(pem.Export(X509ContentType.Pkcs12), null));
        }
        catch (System.Security.Cryptography.CryptographicException e)
        {
            throw new NatsOptionsException(nameof(NatsTransportOptions.TlsCertFile), $"'{_options.TlsCertFile}' with key '{_options.TlsKeyFile}' could not be loaded: {e.Message}");
        }
    }

    private bool Validate(object sender, X509Certificate? certificate, X509Chain? chain, SslPolicyErrors errors)
    {
        string? problem = Check(certificate, errors);
        _lastProblem = problem;
        return problem is null;
    }

    private string? Check(X509Certificate? certificate, SslPolicyErrors errors)
    {
        if (certificate is null || errors.HasFlag(SslPolicyErrors.RemoteCertificateNotAvailable))
            return "the server sent no certificate";
        if (errors.HasFlag(SslPolicyErrors.RemoteCertificateNameMismatch) && _options.TlsVerifyServerName)
            return $"the server certificate ({certificate.Subject}) does not name the host connected to (TlsVerifyServerName)";
        if (_authorities is null)
        {
            return errors.HasFlag(SslPolicyErrors.RemoteCertificateChainErrors)
                ? $"the server certificate ({certificate.Subject}) is not trusted by the system's certificate authorities (set TlsCaFile)"
                : null;
        }
        using var server = X509CertificateLoader.LoadCertificate(certificate.GetRawCertData());
        using var own = new X509Chain();
        own.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        own.ChainPolicy.CustomTrustStore.AddRange(_authorities);
        own.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        if (own.Build(server))
            return null;
        string status = string.Join(", ", own.ChainStatus.Select(s => s.Status));
        return $"the server certificate ({certificate.Subject}) is not signed by a certificate authority in TlsCaFile '{_options.TlsCaFile}' ({status})";
    }
}
