<#
.SYNOPSIS
  Installs (or, with -Uninstall, removes) isapi-wsgi for one IIS site or application.

.DESCRIPTION
  Uses appcmd.exe only (no WebAdministration module needed). Run from an elevated
  PowerShell. What it does, in order (the uninstall undoes the same steps in reverse):

  1. Checks that IIS's "ISAPI Extensions" feature (IsapiModule) is installed; without it
     every request fails with 500.21.
  2. Allows the DLL in "ISAPI and CGI Restrictions" (server level, applicationHost.config).
     Without it: 404.2.
  3. For -VirtualPath other than "/", creates the application (appcmd add app) unless it
     exists.
  4. Adds the handler mapping (path *, IsapiModule, resourceType Unspecified, requireAccess
     Script, preCondition bitness64) to applicationHost.config in a <location> for this
     site/application (/commit:apphost). The handlers section is locked at server level on
     a default install, so a <handlers> block in web.config would fail with 500.19; writing
     the mapping to applicationHost.config needs no unlock. (To use the web.config files
     in this folder instead, unlock the section for that path only:
       appcmd unlock config "Site/app" -section:system.webServer/handlers )
  5. Makes sure the application pool runs 64-bit code (enable32BitAppOnWin64=false), as
     the DLL is x64.
  6. Grants the pool identity (IIS AppPool\<pool>) read+execute on the DLL's directory
     and on the Python home, and write access where the extension logs: -LogDirectory if
     given, else the folder of the ini's `log =` file, else (no `log =`) only the file
     <dll>.log next to the DLL (never the DLL's folder: the pool must not be able to
     replace the DLL).
  7. Registers the Event Log source "isapi-wsgi" (Application log), where the extension
     reports start-up failures.

.EXAMPLE
  .\install.ps1 -Dll C:\apps\app\bin\isapi_wsgi.dll -Site "Default Web Site" -VirtualPath /app -PhysicalPath C:\apps\app -PythonHome C:\Python312

.EXAMPLE
  .\install.ps1 -Dll C:\apps\app\bin\isapi_wsgi.dll -Site "Default Web Site" -VirtualPath /app -Uninstall
#>
[CmdletBinding(SupportsShouldProcess = $true)]
param(
    [Parameter(Mandatory = $true)] [string] $Dll,
    [string] $Site = "Default Web Site",
    [string] $VirtualPath = "/",
    [string] $PhysicalPath,
    [string] $PythonHome,
    [string] $LogDirectory,
    [string] $HandlerName = "isapi-wsgi",
    [switch] $Uninstall
)

$ErrorActionPreference = "Stop"
$appcmd = Join-Path $env:windir "system32\inetsrv\appcmd.exe"
$source = "isapi-wsgi"

function Invoke-AppCmd {
    # Runs appcmd, returns its output, and stops with its message when it fails.
    param([Parameter(ValueFromRemainingArguments = $true)] [string[]] $Arguments)
    Write-Verbose ("appcmd " + ($Arguments -join " "))
    $output = & $appcmd @Arguments 2>&1
    if ($LASTEXITCODE -ne 0) { throw "appcmd $($Arguments -join ' ') failed: $output" }
    return $output
}

function Test-AppCmd {
    # True if appcmd succeeds and prints something (used for "does it exist" queries).
    param([Parameter(ValueFromRemainingArguments = $true)] [string[]] $Arguments)
    $output = & $appcmd @Arguments 2>$null
    return ($LASTEXITCODE -eq 0 -and $output)
}

# ---- checks -------------------------------------------------------------------------
$principal = New-Object Security.Principal.WindowsPrincipal([Security.Principal.WindowsIdentity]::GetCurrent())
if (-not $principal.IsInRole([Security.Principal.WindowsBuiltInRole]::Administrator)) {
    throw "Run this script from an elevated PowerShell (Run as administrator)."
}
if (-not (Test-Path $appcmd)) { throw "IIS is not installed: $appcmd not found." }
$Dll = [IO.Path]::GetFullPath($Dll)
if (-not $VirtualPath.StartsWith("/")) { $VirtualPath = "/" + $VirtualPath }
$VirtualPath = $VirtualPath.TrimEnd("/"); if ($VirtualPath -eq "") { $VirtualPath = "/" }
$configPath = if ($VirtualPath -eq "/") { $Site } else { "$Site$VirtualPath" }
$appName = if ($VirtualPath -eq "/") { "$Site/" } else { "$Site$VirtualPath" }

if (-not (Test-AppCmd list site "/name:$Site")) { throw "No IIS site named '$Site' (appcmd list site)." }

# The application pool of the site/application (for ACLs and bitness).
$pool = $null
if (Test-AppCmd list app "$appName") {
    $pool = (Invoke-AppCmd list app "$appName" /text:applicationPool) | Select-Object -First 1
}

if ($Uninstall) {
    # ---- 4. handler mapping ----------------------------------------------------------
    $handlers = Invoke-AppCmd list config "$configPath" -section:system.webServer/handlers
    if ($handlers -match "name=""$HandlerName""") {
        if ($PSCmdlet.ShouldProcess($configPath, "remove handler $HandlerName")) {
            Invoke-AppCmd set config "$configPath" -section:system.webServer/handlers "/-[name='$HandlerName']" /commit:apphost | Out-Null
        }
    }
    # ---- 3. application: only if it is ours (its physical path holds the DLL) ----------
    if ($VirtualPath -ne "/" -and $pool) {
        $appPhysical = (Invoke-AppCmd list vdir "$appName/" /text:physicalPath) | Select-Object -First 1
        if ($appPhysical -and $Dll.StartsWith([IO.Path]::GetFullPath($appPhysical), [StringComparison]::OrdinalIgnoreCase)) {
            if ($PSCmdlet.ShouldProcess($appName, "delete application")) { Invoke-AppCmd delete app "$appName" | Out-Null }
        } else {
            Write-Warning "Leaving application $appName in place: the DLL is not inside it."
        }
    }
    # ---- 2. restriction ---------------------------------------------------------------
    $restrictions = Invoke-AppCmd list config -section:system.webServer/security/isapiCgiRestriction
    if ($restrictions -match [regex]::Escape("path=""$Dll""")) {
        if ($PSCmdlet.ShouldProcess($Dll, "remove from ISAPI and CGI Restrictions")) {
            Invoke-AppCmd set config -section:system.webServer/security/isapiCgiRestriction "/-[path='$Dll']" /commit:apphost | Out-Null
        }
    }
    # ---- 6. ACLs ----------------------------------------------------------------------
    if ($pool) {
        $identity = "IIS AppPool\$pool"
        $logTarget = (Get-LogTarget).Path
        foreach ($dir in @((Split-Path $Dll), $PythonHome, $logTarget) | Where-Object { $_ -and (Test-Path $_) }) {
            if ($PSCmdlet.ShouldProcess($dir, "remove grants for $identity")) { icacls "$dir" /remove:g "$identity" | Out-Null }
        }
    }
    # ---- 7. The Event Log source may serve other installations on this server: kept. ---
    Write-Host "Uninstalled isapi-wsgi from $appName. The Event Log source '$source' is kept;"
    Write-Host "remove it with: Remove-EventLog -Source $source"
    exit 0
}

# ---- where the extension will log -------------------------------------------------------
function Get-LogTarget {
    # Returns @{ Path = ...; IsFolder = $true|$false }: what the pool identity must be able
    # to write. -LogDirectory wins; else the [wsgi] `log =` of the ini next to the DLL
    # (relative to the ini); else the extension's default under IIS, <dll>.log.
    if ($LogDirectory) { return @{ Path = [IO.Path]::GetFullPath($LogDirectory); IsFolder = $true } }
    $ini = [IO.Path]::ChangeExtension($Dll, ".ini")
    if (Test-Path $ini) {
        $section = ""
        foreach ($line in Get-Content -Encoding UTF8 $ini) {
            $text = ($line -replace '\s[;#].*$', '' -replace '^\s*[;#].*$', '').Trim()
            if ($text -match '^\[(.+)\]$') { $section = $Matches[1].Trim(); continue }
            if ($section -eq "wsgi" -and $text -match '^log\s*=\s*(.+)$') {
                $log = $Matches[1].Trim()
                if (-not [IO.Path]::IsPathRooted($log)) { $log = Join-Path (Split-Path $ini) $log }
                return @{ Path = (Split-Path ([IO.Path]::GetFullPath($log))); IsFolder = $true }
            }
        }
    }
    return @{ Path = [IO.Path]::ChangeExtension($Dll, ".log"); IsFolder = $false }
}

# ---- install -------------------------------------------------------------------------
if (-not (Test-Path $Dll)) { throw "$Dll does not exist." }
$ini = [IO.Path]::ChangeExtension($Dll, ".ini")
if (-not (Test-Path $ini)) { Write-Warning "$ini does not exist: the extension will serve its built-in demo app." }

# 1. IsapiModule present?
if (-not (Test-AppCmd list module /name:IsapiModule)) {
    throw "IIS's ISAPI Extensions feature is not installed (no IsapiModule). Install it with:`n" +
          "  Server:  Install-WindowsFeature Web-ISAPI-Ext`n" +
          "  Client:  Enable-WindowsOptionalFeature -Online -FeatureName IIS-ISAPIExtensions"
}

# 2. ISAPI and CGI Restrictions (server level only).
$restrictions = Invoke-AppCmd list config -section:system.webServer/security/isapiCgiRestriction
if (-not ($restrictions -match [regex]::Escape("path=""$Dll"""))) {
    if ($PSCmdlet.ShouldProcess($Dll, "allow in ISAPI and CGI Restrictions")) {
        Invoke-AppCmd set config -section:system.webServer/security/isapiCgiRestriction `
            "/+[path='$Dll',allowed='True',groupId='isapi-wsgi',description='isapi-wsgi (Python WSGI)']" /commit:apphost | Out-Null
    }
}

# 3. The application.
if ($VirtualPath -ne "/" -and -not $pool) {
    if (-not $PhysicalPath) { throw "-PhysicalPath is needed to create the application $appName." }
    if ($PSCmdlet.ShouldProcess($appName, "create application at $PhysicalPath")) {
        Invoke-AppCmd add app "/site.name:$Site" "/path:$VirtualPath" "/physicalPath:$PhysicalPath" | Out-Null
    }
    $pool = (Invoke-AppCmd list app "$appName" /text:applicationPool) | Select-Object -First 1
}

# 4. The handler mapping, in applicationHost.config (no unlock of the handlers section).
$handlers = Invoke-AppCmd list config "$configPath" -section:system.webServer/handlers
if ($handlers -match "name=""$HandlerName""") {
    Write-Host "Handler $HandlerName already mapped for $configPath."
} elseif ($PSCmdlet.ShouldProcess($configPath, "map * to $Dll")) {
    Invoke-AppCmd set config "$configPath" -section:system.webServer/handlers `
        "/+[name='$HandlerName',path='*',verb='*',modules='IsapiModule',scriptProcessor='$Dll',resourceType='Unspecified',requireAccess='Script',preCondition='bitness64']" `
        /commit:apphost | Out-Null
}

# 5. A 64-bit pool.
if ($pool) {
    $is32 = (Invoke-AppCmd list apppool "$pool" /text:enable32BitAppOnWin64) | Select-Object -First 1
    if ($is32 -eq "true") {
        Write-Warning "Application pool '$pool' runs 32-bit code; the DLL is 64-bit. Switching it to 64-bit."
        if ($PSCmdlet.ShouldProcess($pool, "set enable32BitAppOnWin64=false")) {
            Invoke-AppCmd set apppool "$pool" /enable32BitAppOnWin64:false | Out-Null
        }
    }
}

# 6. Permissions for the pool identity.
if ($pool) {
    $identity = "IIS AppPool\$pool"
    foreach ($dir in @((Split-Path $Dll), $PythonHome) | Where-Object { $_ }) {
        if (-not (Test-Path $dir)) { Write-Warning "$dir does not exist."; continue }
        if ($PSCmdlet.ShouldProcess($dir, "grant $identity read+execute")) { icacls "$dir" /grant "${identity}:(OI)(CI)RX" | Out-Null }
    }
    $logTarget = Get-LogTarget
    if ($logTarget.IsFolder) {
        New-Item -ItemType Directory -Force -Path $logTarget.Path | Out-Null
        if ($PSCmdlet.ShouldProcess($logTarget.Path, "grant $identity modify (log folder)")) {
            icacls "$($logTarget.Path)" /grant "${identity}:(OI)(CI)M" | Out-Null
        }
    } else {
        # The default log sits next to the DLL: create the file and grant it alone.
        if (-not (Test-Path $logTarget.Path)) { New-Item -ItemType File -Path $logTarget.Path | Out-Null }
        if ($PSCmdlet.ShouldProcess($logTarget.Path, "grant $identity modify (log file)")) {
            icacls "$($logTarget.Path)" /grant "${identity}:M" | Out-Null
        }
    }
} else {
    Write-Warning "Could not find the application pool of $appName: grant its identity read access to the DLL's folder and the Python home yourself."
}

# 7. The Event Log source used for start-up failures.
if (-not [Diagnostics.EventLog]::SourceExists($source)) {
    if ($PSCmdlet.ShouldProcess($source, "register Event Log source")) { New-EventLog -LogName Application -Source $source }
}

Write-Host "Installed: $appName -> $Dll (pool: $pool). Try it: Invoke-WebRequest http://localhost$VirtualPath"
